"""Relation-word swaps (laart_lab.data.relation_swap): hand-worked stories, the real release, the hook."""

from __future__ import annotations

import random

import pytest
import torch

from laart_lab.data.clutrr import ClutrrDataModule, ClutrrExample, read_release
from laart_lab.data.clutrr_text import TextCollator, tokenize
from laart_lab.data.kinship_algebra import GENDER_OF_TERM, KIND_OF
from laart_lab.data.relation_swap import (
    RelationSwap,
    chain_answer,
    relation_swapped,
    swap_relation_word,
    swappable_edges,
)
from laart_lab.paths import data_path
from tests.benchmark_scripts import load_benchmark

CLUTRR_ZIP = data_path("clutrr", "data_089907f8.zip")
FEMALE, MALE = 1, 2


def _example(story: str, names: list[str], genders: list[int], edges: list[tuple[int, int, str]], target: str):
    head, tail = edges[0][0], edges[-1][1]  # the edges are a chain from the query's head to its tail
    return ClutrrExample(
        id="hand", story=story, query_text=f"('{names[head]}', '{names[tail]}')", target=target, edges=edges,
        query=(head, tail), genders=genders, path=[r for _, _, r in edges], k=len(edges), names=names,
    )  # fmt: skip


# Ann's son is Bob, Bob's sister is Cat: Cat is Ann's daughter. The second sentence states Bob -> Ann
# with the inverse word ("his mother" names Ann, the edge's first person).
ANN_BOB_CAT = _example(
    "[Ann] went out. [Bob] hugged his mother [Ann]. [Bob] called his sister [Cat].",
    ["Ann", "Bob", "Cat"],
    [FEMALE, MALE, FEMALE],
    [(0, 1, "son"), (1, 2, "sister")],
    "daughter",
)


def test_swappable_edges_find_the_word_and_whom_it_names() -> None:
    found = swappable_edges(ANN_BOB_CAT)
    assert [(s.edge, s.word, s.names_target) for s in found] == [(0, "mother", False), (1, "sister", True)]
    for s in found:
        assert ANN_BOB_CAT.story[s.start : s.end] == s.word


def test_a_swap_rewrites_the_word_the_edge_and_the_answer_hand_worked() -> None:
    mother, sister = swappable_edges(ANN_BOB_CAT)
    # "his aunt [Ann]": Bob's aunt is Ann, so Ann's nephew is Bob; Ann's nephew's sister is her niece
    swapped = swap_relation_word(ANN_BOB_CAT, mother, "aunt")
    assert swapped.story == "[Ann] went out. [Bob] hugged his aunt [Ann]. [Bob] called his sister [Cat]."
    assert swapped.edges == [(0, 1, "nephew"), (1, 2, "sister")]
    assert (swapped.path, swapped.target) == (["nephew", "sister"], "niece")
    # "his wife [Cat]": Bob's wife is Cat; Ann's son's wife is her daughter-in-law
    swapped = swap_relation_word(ANN_BOB_CAT, sister, "wife")
    assert swapped.story.endswith("[Bob] called his wife [Cat].")
    assert swapped.edges == [(0, 1, "son"), (1, 2, "wife")]
    assert swapped.target == "daughter-in-law"
    assert ANN_BOB_CAT.story.endswith("his sister [Cat].")  # the original is left as it was


def test_capitals_are_kept_and_gender_must_match() -> None:
    story = _example("[Ann] called. Sister of [Bob], [Ann] was late.", ["Bob", "Ann"], [MALE, FEMALE],
                     [(0, 1, "sister")], "sister")  # fmt: skip
    (edge,) = swappable_edges(story)
    assert swap_relation_word(story, edge, "mother").story == "[Ann] called. Mother of [Bob], [Ann] was late."
    with pytest.raises(ValueError, match="keeps the person's gender"):
        swap_relation_word(story, edge, "brother")


@pytest.mark.parametrize(
    "story",
    [
        "[Bob] and his brother [Dan] sat down.",  # two brothers: "brother" fits either of them
        "[Bob] and his brother [Dan] met [Eve].",  # a third person in the sentence
        "[Bob] and his brother [Dan] met their mother.",  # a second kinship word
        "[Bob] and his brother [Dan] sat down. [Dan] and [Bob] ate.",  # another sentence names both
    ],
)
def test_edges_whose_word_is_not_certain_are_not_swapped(story: str) -> None:
    names = ["Bob", "Dan", "Eve"] if "[Eve]" in story else ["Bob", "Dan"]
    example = _example(story, names, [MALE] * len(names), [(0, 1, "brother")], "brother")
    assert swappable_edges(example) == []
    assert relation_swapped(example, random.Random(0)) is example


# Annette's father is Michael, Michael's sister is Dorothy: Dorothy is Annette's aunt. One crowded sentence (three
# people, two kinship words) states both edges, each word right before the person it names.
ANNETTE = _example(
    "[Annette] and her father [Michael] went to visit his sister, [Dorothy].",
    ["Annette", "Michael", "Dorothy"],
    [FEMALE, MALE, FEMALE],
    [(0, 1, "father"), (1, 2, "sister")],
    "aunt",
)


def test_crowded_sentences_are_swapped_only_when_asked_where_the_word_precedes_its_person() -> None:
    assert swappable_edges(ANNETTE) == []  # the default: a crowded sentence is left alone
    father, sister = swappable_edges(ANNETTE, crowded=True)
    assert (father.edge, father.word, father.names_target) == (0, "father", True)
    assert (sister.edge, sister.word, sister.names_target) == (1, "sister", True)
    assert ANNETTE.story[father.start : father.end] == "father" and ANNETTE.story[sister.start : sister.end] == "sister"
    # "his mother, [Dorothy]": Michael's mother is Dorothy, Annette's father's mother is her grandmother
    swapped = swap_relation_word(ANNETTE, sister, "mother")
    assert swapped.story == "[Annette] and her father [Michael] went to visit his mother, [Dorothy]."
    assert (swapped.edges, swapped.target) == ([(0, 1, "father"), (1, 2, "mother")], "grandmother")
    # "her uncle [Michael]": Annette's uncle's sister is her aunt (or her mother): no one answer, no swap
    assert swap_relation_word(ANNETTE, father, "uncle") is None
    # "her son [Michael]": Annette's son's sister is her daughter
    swapped = swap_relation_word(ANNETTE, father, "son")
    assert swapped.story.startswith("[Annette] and her son [Michael]") and swapped.target == "daughter"


@pytest.mark.parametrize(
    "story",
    [
        "[Annette] and [Michael], her father, went to visit [Dorothy], his sister.",  # each word after its person
        "[Annette] and her father [Michael] went to visit his sister [Dorothy] and her sister.",  # "sister" twice
    ],
)
def test_crowded_edges_whose_word_is_not_tied_to_its_person_are_not_swapped(story: str) -> None:
    example = _example(story, ANNETTE.names, ANNETTE.genders, ANNETTE.edges, "aunt")
    found = {s.word for s in swappable_edges(example, crowded=True)}
    assert "sister" not in found
    assert ("father" in found) == ("her father [Michael]" in story)


def test_a_chain_the_algebra_disagrees_with_is_not_swapped() -> None:
    wrong_answer = _example("[Ann] hugged her son [Bob].", ["Ann", "Bob"], [FEMALE, MALE], [(0, 1, "son")], "uncle")
    assert swappable_edges(wrong_answer) == []


def test_the_hook_swaps_its_share_seeded_and_only_in_training() -> None:
    examples = [ANN_BOB_CAT] * 200
    torch.manual_seed(0)
    swapped = RelationSwap(0.5)(examples)
    share = sum(e is not ANN_BOB_CAT for e in swapped) / len(examples)
    assert 0.4 < share < 0.6
    torch.manual_seed(0)
    assert [e.story for e in RelationSwap(0.5)(examples)] == [e.story for e in swapped]
    assert all(e is ANN_BOB_CAT for e in RelationSwap(0.0)(examples))
    with pytest.raises(ValueError, match="share of training stories"):
        RelationSwap(1.5)
    torch.manual_seed(0)
    crowded = RelationSwap(1.0, crowded=True)([ANNETTE] * 20)
    assert all(e is not ANNETTE for e in crowded) and all(e is ANNETTE for e in RelationSwap(1.0)([ANNETTE] * 20))
    with pytest.raises(ValueError, match="relation_swap_crowded widens relation_swap, which is 0"):
        ClutrrDataModule(view="text", relation_swap_crowded=True)
    with pytest.raises(ValueError, match="relation_swap rewrites story text, which view='graph' does not read"):
        ClutrrDataModule(view="graph", relation_swap=0.5)
    with pytest.raises(ValueError, match="mix_stories and relation_swap rewrite story text"):
        ClutrrDataModule(view="graph", mix_stories=0.3, relation_swap=0.5)
    with pytest.raises(ValueError, match="an evaluation collator reads them as written"):
        TextCollator(None, {}, 8, training=False, augment=RelationSwap(0.5))  # type: ignore[arg-type]


@pytest.mark.data
@pytest.mark.skipif(not CLUTRR_ZIP.exists(), reason=f"CLUTRR reference data absent at {CLUTRR_ZIP}")
@pytest.mark.parametrize("crowded", [False, True])
def test_real_release_swaps_change_one_word_and_the_algebra_matches_clutrr(crowded: bool) -> None:
    train = read_release(CLUTRR_ZIP).train
    # the algebra composes CLUTRR's own chains into CLUTRR's own answers (where it names one relation)
    answers = [(chain_answer(e.path), e.target) for e in train]
    defined = [(a, t) for a, t in answers if a is not None]
    assert len(defined) > 0.7 * len(train) and sum(a == t for a, t in defined) > 0.98 * len(defined)

    rng = random.Random(0)
    swapped_count = checked = read_back = 0
    for example in train[:600]:
        swapped = relation_swapped(example, rng, swappable_edges(example, crowded))
        if swapped is example:
            continue
        swapped_count += 1
        before, after = tokenize(example.story), tokenize(swapped.story)
        changed = [(b, a) for b, a in zip(before, after) if b != a]
        assert len(before) == len(after) and len(changed) == 1
        ((old, new),) = changed
        assert old in KIND_OF and new in KIND_OF and GENDER_OF_TERM[old] == GENDER_OF_TERM[new]
        assert swapped.target == chain_answer(swapped.path) and len(swapped.path) == example.k
        # read back, the swapped story states its new edge with the new word (unless it now fits both
        # people, as "brother" does two brothers). In a crowded sentence the new word may also be the word of
        # another of its edges ("his daughter [M] ... her father [S]": "daughter" fits two edges), which the
        # search then leaves alone: that may happen, rarely
        if KIND_OF[new] not in ("sibling", "spouse"):
            checked += 1
            read_back += new in {s.word for s in swappable_edges(swapped, crowded)}
    assert swapped_count > (0.5 if crowded else 0.4) * 600
    assert read_back == checked if not crowded else read_back > 0.9 * checked

    dm = ClutrrDataModule(source="clutrr", view="text", batch_size=8, relation_swap=0.5)
    dm.setup("fit")
    assert dm.train_dataloader().collate_fn.augment is dm.relation_swap
    assert dm.val_dataloader().collate_fn.augment is None


def test_statement_audit_counts_contradicting_statements_hand_worked() -> None:
    audit = load_benchmark("clutrr_statement_audit")
    says_bob_is_anns_son = "[Ann] took her son [Bob] out. [Cat] was there."
    rows = [
        # gold "Ann's son is Bob": agrees
        _example(says_bob_is_anns_son, ["Ann", "Bob"], [FEMALE, MALE], [(0, 1, "son")], "son"),
        # gold stored the other way, "Bob's mother is Ann": agrees
        _example(says_bob_is_anns_son, ["Bob", "Ann"], [MALE, FEMALE], [(0, 1, "mother")], "mother"),
        # gold "Bob's daughter is Ann": the text says the opposite
        _example(says_bob_is_anns_son, ["Bob", "Ann"], [MALE, FEMALE], [(0, 1, "daughter")], "daughter"),
        # "[Ann]'s brother [Bob]" against gold "Ann's son is Bob": contradicts
        _example("[Ann]'s brother [Bob] came.", ["Ann", "Bob"], [FEMALE, MALE], [(0, 1, "son")], "son"),
    ]
    result = audit.audit(rows)
    assert (result["statements"], result["contradicting"]) == (4, 2)
    assert dict(result["top_contradicting"]) == {"[_] took her son [_]": 1, "[_]'s brother [_]": 1}
