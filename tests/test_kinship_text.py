"""The kinship generator's story text: paraphrases, two-fact sentences, pronouns, distractors, held-out wording."""

from __future__ import annotations

import csv
import functools
import random
import re
import time
from pathlib import Path

import pytest

from laart_lab.data.clutrr import ClutrrDataModule, ClutrrExample, read_release
from laart_lab.data.kinship import FEMALE, MALE, Template, all_templates, generate_kinship, write_story

TRAIN_FILE = "1.2,1.3_train.csv"
SENTENCE = re.compile(r"(?<=\.) (?=[\[A-Z])")  # templates end with "." and start with "[" or He/She


def phrase(template: Template) -> str:
    """The template's longest literal stretch: a phrase that only this template writes."""
    return max((chunk.strip(" []'.,") for chunk in re.split(r"\{[^}]+\}", template.text)), key=len)


TRAIN_PHRASES = {phrase(t) for t in all_templates() if not t.heldout}
HELDOUT_PHRASES = {phrase(t) for t in all_templates() if t.heldout}


@functools.cache
def generated(root: str, **kwargs: object) -> Path:
    name = "-".join(f"{k}{v}" for k, v in sorted(kwargs.items())) or "default"
    args = {"seed": 5, "train_rows": 300, "test_rows": 30, "test_ks": [2, 3, 6], **kwargs}
    return generate_kinship(Path(root) / name, **args)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("kinship_text"))


def rows(folder: Path, name: str) -> list[dict[str, str]]:
    with open(folder / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def all_sentences(seeds: range, *args: object, **kwargs: object) -> set[str]:
    return {s.text for seed in seeds for s in write_story(*args, rng=random.Random(seed), **kwargs)}  # type: ignore[misc]


# ---- the templates, hand-checked ------------------------------------------------------------------
def test_every_template_states_anna_s_son_bob_correctly() -> None:
    """Edge "Anna's son is Bob": every train and every held-out sentence, written out by hand."""
    args = (["Anna", "Bob"], [FEMALE, MALE], [(0, 1, "son")])
    assert all_sentences(range(300), *args, split="train") == {
        "[Anna] took her son [Bob] out for lunch.",
        "[Anna] called her son [Bob] to catch up.",
        "[Bob] is the son of [Anna].",
        "[Bob] loves visiting his mother [Anna].",
        "[Bob] asked his mother [Anna] for some advice.",
        "[Bob] went shopping with his mother, [Anna].",
        "[Anna] was very proud of her son [Bob] for winning the race.",
    }
    assert all_sentences(range(300), *args, split="test") == {
        "[Anna] baked cookies for her son [Bob].",
        "[Anna]'s son, [Bob], came over for dinner.",
        "[Bob] wrote a long letter to his mother [Anna].",
        "[Anna] taught her son [Bob] how to ride a bike.",
    }
    everything = all_sentences(range(400), *args, split="train", heldout_templates=False)
    assert len(everything) == 11  # 7 + 4: without held-out templates train uses them all


def test_two_facts_in_one_sentence_and_their_son_only_when_true() -> None:
    """Anna's husband is Bob, Bob's daughter is Cara: "their daughter" only when Cara is Anna's daughter."""
    names, genders, edges = ["Anna", "Bob", "Cara"], [FEMALE, MALE, FEMALE], [(0, 1, "husband"), (1, 2, "daughter")]
    both = all_sentences(range(400), names, genders, edges, relation=lambda a, b: "daughter")
    assert "[Anna] and her husband [Bob] took their daughter [Cara] fishing." in both
    assert not any("whose" in s or "who is the" in s for s in both)  # the couple form is chosen when it is true
    step = all_sentences(range(400), names, genders, edges, relation=lambda a, b: None)
    assert "[Anna] has a husband, [Bob], whose daughter is [Cara]." in step
    assert "[Cara] is the daughter of [Bob], who is the husband of [Anna]." in step
    assert not any("their daughter" in s for s in step)
    aunt = all_sentences(range(400), ["Dan", "Eve", "Fay"], [MALE, FEMALE, FEMALE], [(0, 1, "aunt"), (1, 2, "niece")])
    assert "[Dan] has an aunt, [Eve], whose niece is [Fay]." in aunt  # a/an


def test_pronouns_refer_to_the_previous_sentence_s_only_person_of_that_gender() -> None:
    """Anna's husband is Bob, Bob's sister is Cara: "He" may stand for Bob right after a sentence naming him."""
    names, genders, edges = ["Anna", "Bob", "Cara"], [FEMALE, MALE, FEMALE], [(0, 1, "husband"), (1, 2, "sister")]
    seen = set()
    for seed in range(300):
        story = write_story(names, genders, edges, random.Random(seed), pair_edges=[])
        for previous, sentence in zip(story, story[1:]):
            if sentence.pronoun is not None:
                seen.add(sentence.text)
                assert sentence.pronoun == 1 and "[Bob]" in previous.text and "[Bob]" not in sentence.text
        assert story[0].pronoun is None
    assert seen == {
        "He also has a sister, [Cara].",
        "He often goes hiking with his sister [Cara].",
        "He also has a wife, [Anna].",  # Bob's wife is Anna: the fact "Anna's husband is Bob" from Bob's side
        "He often goes hiking with his wife [Anna].",
    }


# ---- generated files ------------------------------------------------------------------------------
def test_generator_text_is_deterministic_and_the_graph_does_not_depend_on_it(root: str, tmp_path: Path) -> None:
    a = generated(root)
    b = generate_kinship(tmp_path / "b", seed=5, train_rows=300, test_rows=30, test_ks=[2, 3, 6])
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in (TRAIN_FILE, "1.6_test.csv"))
    clean = generated(root, distractors=0.0, heldout_templates=False)
    for x, y in zip(rows(a, TRAIN_FILE), rows(clean, TRAIN_FILE), strict=True):
        assert (x["edge_types"], x["target"], x["query"]) == (y["edge_types"], y["target"], y["query"])
        assert y["story_edges"] == str([(i, i + 1) for i in range(len(eval(y["edge_types"])))])


def test_every_fact_names_its_people(root: str) -> None:
    """Each story edge has a sentence naming both people, or one and a he/she for the other that the
    previous sentence names as its only person of that gender; every node is named somewhere."""
    release = read_release(generated(root))
    examples = [*release.train, *(e for rows in release.tests.values() for e in rows)]
    pronoun_sentences = total_sentences = 0
    for example in examples:
        sentences = SENTENCE.split(example.story)
        total_sentences += len(sentences)
        assert all(f"[{name}]" in example.story for name in example.names), example.id
        for a, b in [(s, t) for s, t, _ in example.edges] + example.untyped_edges:
            assert _states(example, sentences, a, b), (example.id, a, b, example.story)
        pronoun_sentences += sum(s.startswith(("He ", "She ")) for s in sentences)
    assert 0.05 < pronoun_sentences / total_sentences < 0.2  # a minority of sentences


def _states(example: ClutrrExample, sentences: list[str], a: int, b: int) -> bool:
    name = example.names
    for i, sentence in enumerate(sentences):
        if f"[{name[a]}]" in sentence and f"[{name[b]}]" in sentence:
            return True
        for person, other in ((a, b), (b, a)):
            pronoun = "He " if example.genders[person] == 2 else "She "
            if sentence.startswith(pronoun) and f"[{name[other]}]" in sentence and i > 0:
                named = re.findall(r"\[([^\]]+)\]", sentences[i - 1])
                same = [n for n in named if example.genders[name.index(n)] == example.genders[person]]
                if same == [name[person]]:
                    return True
    return False


def test_heldout_paraphrases_never_appear_in_training_rows(root: str) -> None:
    assert not {h for h in HELDOUT_PHRASES for t in all_templates() if not t.heldout and h in t.text}
    folder = generated(root)
    train = " ".join(r["story"] for r in rows(folder, TRAIN_FILE))
    test = " ".join(r["story"] for name in ("1.2_test.csv", "1.3_test.csv", "1.6_test.csv") for r in rows(folder, name))
    assert not [p for p in HELDOUT_PHRASES if p in train]
    assert not [p for p in TRAIN_PHRASES - {"is the"} if p in test]  # test rows: held-out wording only
    assert len([p for p in HELDOUT_PHRASES if p in test]) >= 10
    mixed = " ".join(r["story"] for r in rows(generated(root, heldout_templates=False), TRAIN_FILE))
    assert len([p for p in HELDOUT_PHRASES if p in mixed]) >= 10  # heldout_templates=False: train uses them


def test_distractors_are_untyped_edges_to_new_nodes(root: str) -> None:
    release = read_release(generated(root))
    counts = [len(e.untyped_edges) for e in release.train]
    assert set(counts) == {0, 1, 2} and 0.8 < sum(counts) / len(counts) < 1.2  # default: one per story
    for example in release.train:
        k = example.k
        assert example.edges == [(i, i + 1, r) for i, r in enumerate(example.path)] and len(example.path) == k
        new_nodes = [b for _, b in example.untyped_edges]
        assert new_nodes == list(range(k + 1, k + 1 + len(new_nodes)))  # appended after the path's nodes
        assert all(a <= k for a, _ in example.untyped_edges)  # each hangs off a story person
        assert len(example.genders) == len(example.names) == k + 1 + len(new_nodes) and 0 not in example.genders
    clean = read_release(generated(root, distractors=0.0))
    assert all(not e.untyped_edges and len(e.names) == e.k + 1 for e in clean.train)
    with pytest.raises(ValueError, match="distractors"):
        generate_kinship(Path(root) / "bad", distractors=3.0)


def test_graph_view_keeps_typed_edges_only(root: str) -> None:
    dm = ClutrrDataModule(path=str(generated(root)), batch_size=64)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.edge_mask.sum(1).tolist() == batch.path_length.tolist()
    assert [len(u) for u in batch.meta["untyped_edges"]] != [0] * 64
    assert batch.node_genders.shape[1] >= int(batch.path_length.max()) + 2  # distractor nodes have genders


def test_generator_is_fast(tmp_path: Path) -> None:
    start = time.perf_counter()
    generate_kinship(tmp_path / "big", seed=0, train_rows=5000, test_rows=10, test_ks=[2])
    assert time.perf_counter() - start < 15  # a few seconds on a shared 2-core runner
