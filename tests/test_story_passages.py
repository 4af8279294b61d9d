"""Story mixing by passages (``mix_passages``): what stays together, and that mixing keeps every fact readable."""

from __future__ import annotations

import random

import pytest

from laart_lab.data.clutrr import ClutrrDataModule, parse_row, read_release
from laart_lab.data.clutrr_text import ended_sentences, mixed_story, people_named, story_passages
from laart_lab.paths import data_path
from tests.test_laart import DOROTHY

CLUTRR_ZIP = data_path("clutrr", "data_089907f8.zip")


def row(story: str, names: list[str], edges: list[tuple[int, int, str]], genders: str, query: tuple[str, str]):
    return parse_row(
        {**DOROTHY, "story": story, "story_edges": str([(a, b) for a, b, _ in edges]),
         "edge_types": str([r for _, _, r in edges]), "genders": genders, "query": str(query),
         "query_edge": str((0, len(names) - 1))},
        "hand-made row",
    )  # fmt: skip


def test_each_rule_keeps_a_sentence_with_the_one_before() -> None:
    story = (
        "[Jeremy] and his brother [Thomas] went to the park. They threw a ball around. "  # names nobody
        "[Jason] played cards with his son. [Thomas] did not find it amusing. "  # a fact across sentences (gold edge)
        "[Alma] baked a cake. Her son [Jeremy] ate it."  # starts with a pronoun
    )
    example = row(
        story, ["Jason", "Thomas", "Jeremy", "Alma"], [(0, 1, "son"), (1, 2, "brother"), (2, 3, "mother")],
        "Jason:male,Thomas:male,Jeremy:male,Alma:female", ("Jason", "Alma"),
    )  # fmt: skip
    # nodes in the order of the genders field: Jason 0, Thomas 1, Jeremy 2, Alma 3
    assert story_passages(example) == [
        "[Jeremy] and his brother [Thomas] went to the park. They threw a ball around.",
        "[Jason] played cards with his son. [Thomas] did not find it amusing.",
        "[Alma] baked a cake. Her son [Jeremy] ate it.",
    ]
    passages = story_passages(example)
    assert " ".join(passages) == " ".join(ended_sentences(story))  # nothing lost, nothing reordered
    names = [n.strip().lower() for n in example.names]
    for a, b, _ in example.edges:  # every gold fact is named within one passage
        assert any({names[a], names[b]} <= people_named(p) for p in passages), (names[a], names[b])


def test_a_fact_across_sentences_is_kept_whole_by_its_gold_edge() -> None:
    """The third sentence names someone and starts with a name: only the gold edge keeps it with the second."""
    story = "[Jason] sang. [Jason] played cards with his son. [Michael] did not find it amusing."
    example = row(story, ["Jason", "Michael"], [(0, 1, "son")], "Jason:male,Michael:male", ("Jason", "Michael"))
    assert story_passages(example) == [
        "[Jason] sang.",
        "[Jason] played cards with his son. [Michael] did not find it amusing.",
    ]


def test_mixing_by_passages_interleaves_whole_passages_in_each_storys_order() -> None:
    first = row(
        "[Christopher] loves movies with his daughter. Her name is [Guillermina]. [Lucille] plays with her sister "
        "[Guillermina]. [Lucille] sang.",
        ["Christopher", "Guillermina", "Lucille"], [(0, 1, "daughter"), (1, 2, "sister")],
        "Christopher:male,Guillermina:female,Lucille:female", ("Christopher", "Lucille"),
    )  # fmt: skip
    second = parse_row(dict(DOROTHY), "row 1")
    kept = story_passages(first)
    assert kept[0] == "[Christopher] loves movies with his daughter. Her name is [Guillermina]."
    for seed in range(20):
        mixed = mixed_story(first, second, seed, passages=True).story
        positions = [mixed.index(p) for p in kept]
        assert positions == sorted(positions)  # every passage whole, in the story's order
        by_sentence = mixed_story(first, second, seed).story
        assert sorted(ended_sentences(by_sentence)) == sorted(ended_sentences(mixed))  # the same sentences
    cut = [
        seed for seed in range(20)
        if "[Christopher] loves movies with his daughter. Her name is [Guillermina]."
        not in mixed_story(first, second, seed).story
    ]  # fmt: skip
    assert cut  # sentence by sentence, some mixes cut the fact: what passages prevent


def test_mix_passages_needs_mix_stories() -> None:
    with pytest.raises(ValueError, match="mix_passages"):
        ClutrrDataModule(source="generated", view="text", mix_passages=True, name_genders=None)


@pytest.mark.data
@pytest.mark.skipif(not CLUTRR_ZIP.exists(), reason=f"CLUTRR reference data absent at {CLUTRR_ZIP}")
def test_real_release_every_gold_fact_is_named_within_one_passage() -> None:
    train = read_release(CLUTRR_ZIP).train
    rng = random.Random(0)
    sentences = passages = 0
    for example in rng.sample(train, 1500):
        parts = story_passages(example)
        assert " ".join(parts) == " ".join(ended_sentences(example.story))
        names = [n.strip().lower() for n in example.names]
        for a, b, _ in example.edges:
            assert any({names[a], names[b]} <= people_named(part) for part in parts)
        sentences += len(ended_sentences(example.story))
        passages += len(parts)
    assert passages < sentences < 1.5 * passages  # passages still leave plenty of places to mix at
