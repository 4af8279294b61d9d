"""Relation-word swaps: training stories whose only clue to a relation is its kinship word.

A reader trained on CLUTRR's crowd-written stories learns the words *around* a relation as well as
the relation word: if the workers who wrote granddaughter stories liked "a lovely girl", then
"[Julie], who is the sister of [Jamie], is a lovely girl" reads as a granddaughter. Test stories are
written by other workers, so those cues mislead. A swap breaks the cue: in a sentence that states one
gold edge with one kinship word (and names only that edge's two people), the word is replaced by
another kinship word for a person of the same gender ("granddaughter" -> "sister", "aunt", ...), and
the labels follow: the edge, the chain and the answer (composed again through
:mod:`laart_lab.data.kinship_algebra`). The rest of the sentence now appears with every relation, so
only the kinship word predicts it.

Which person the word names decides how the edge changes. Gold edge ``(a, b, r)`` is "a's r is b":

* the sentence's word is ``r`` ("[A] took his son [B]"): the word names b, so the edge becomes
  ``(a, b, new)``;
* the word is the inverse of ``r`` ("[B] took his father [A]"): the word names a, so "b's new is a",
  and the edge becomes ``(a, b, inverse(new))``.

An edge is not swapped when the word could name either person (two brothers: "brother" fits both),
when another sentence also names both people, for in-law terms (several words), or when the algebra
cannot compose the new chain into one answer (the answer of the original chain must also agree with the
gold target). A sentence that names a third person or holds a second kinship word ("[Annette] and her
father [Michael] went to visit his sister [Dorothy]") is *crowded*: there a word could belong to
another pair, so by default it is not swapped. With ``crowded=True`` it is, where the edge's word
stands directly before a mention of the person it names ("father [Michael]", "sister, [Dorothy]") and
occurs once in the sentence: such sentences are where a reader must tie each word to its pair, and
unswapped, their templates can be learnt whole.
"""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass
from typing import Any

import torch

from laart_lab.data.clutrr_text import GENDER_NAMES, people_named, sentence_spans, tokenize
from laart_lab.data.kinship_algebra import GENDER_OF_TERM, KIND_OF, compose, inverse_relation

_NAME = re.compile(r"\[[^\]]+\]")
#: kinship words written as one word (in-law terms are several tokens: not swapped, not swapped in)
SWAP_WORDS: tuple[str, ...] = tuple(sorted(term for term in KIND_OF if "-" not in term))


@dataclass(frozen=True)
class SwappableEdge:
    """A gold edge a swap may rewrite: where its kinship word is in the story, and whom it names."""

    edge: int  #: index into ``example.edges``
    start: int  #: character span of the kinship word in ``example.story``
    end: int
    word: str  #: the word as the story writes it, lower-cased
    names_target: bool  #: True: the word names the edge's second person (b), False: its first (a)
    #: the kinship words of the edge's sentence: a swap never writes one of them, so that no word of the sentence
    #: appears twice ("her daughter [A] and her mother [G]" never becomes "her mother [A] and her mother [G]")
    sentence_words: frozenset[str] = frozenset()


def chain_answer(path: list[str]) -> str | None:
    """The relation the algebra composes from a chain of relations, or None where it is not one relation."""
    if not path:
        return None
    answer: str | None = path[0]
    for relation in path[1:]:
        answer = compose(answer, relation) if answer is not None else None
    return answer


def swappable_edges(example: Any, crowded: bool = False) -> list[SwappableEdge]:
    """The gold edges of a story that :func:`swap_relation_word` may rewrite (see the module docstring);
    ``crowded``: also in sentences with a third person or a second kinship word, where the word directly
    precedes a mention of the person it names."""
    if chain_answer(example.path) != example.target:
        return []
    names = [name.lower() for name in example.names]
    sentences = sentence_spans(example.story)
    mentioned = [people_named(text) for _, text in sentences]
    found = []
    for index, (a, b, relation) in enumerate(example.edges):
        if "-" in relation or a >= len(names) or b >= len(names):
            continue
        both = [i for i, people in enumerate(mentioned) if {names[a], names[b]} <= people]
        if len(both) != 1:
            continue
        offset, text = sentences[both[0]]
        tokens = tokenize(text)
        if "law" in tokens:  # "father-in-law" reads as father, -, in, -, law
            continue
        words = [token for token in tokens if token in KIND_OF]
        is_crowded = len(mentioned[both[0]]) != 2 or len(words) != 1
        if is_crowded and not crowded:
            continue
        inverse = inverse_relation(relation, GENDER_NAMES.get(example.genders[a]))
        # the word that states the edge: the sentence's only kinship word, or (crowded) the edge's word or its
        # inverse right before a mention of the person it names
        stating = words if not is_crowded else _words_before(text, [(relation, names[b]), (inverse, names[a])])
        if len(stating) != 1:
            continue
        word = stating[0]
        names_b = word == relation
        names_a = word == inverse
        if names_a == names_b:  # neither, or both (two brothers): the word's person is not known
            continue
        unnamed = _NAME.sub(lambda m: " " * len(m.group()), text)  # a name is never the word
        spans = [m.span() for m in re.finditer(rf"\b{word}\b", unnamed, flags=re.IGNORECASE)]
        if len(spans) != 1:
            continue
        start, end = spans[0]
        found.append(SwappableEdge(index, offset + start, offset + end, word, names_b, frozenset(words)))
    return found


def _words_before(text: str, named_by: list[tuple[str | None, str]]) -> list[str]:
    """Of the kinship words ``named_by`` (word, the lower-case name it would name), those that stand directly
    before a mention of that name in ``text`` ("sister [Dorothy]", "sister, [Dorothy]"). A word that could name
    either person (two brothers) is listed once per person it stands before."""
    return [
        word
        for word, name in named_by
        if word is not None
        and re.search(rf"\b{word}\b,?\s*\[\s*{re.escape(name)}\s*\]", text, flags=re.IGNORECASE) is not None
    ]


def swap_relation_word(example: Any, swappable: SwappableEdge, new_word: str) -> Any | None:
    """``example`` with the edge's kinship word replaced by ``new_word`` (same gender) and its labels
    composed again, or None when the new chain does not compose into one answer."""
    from laart_lab.data.clutrr import relation_path  # here, not above: laart_lab.data.clutrr imports this module

    if GENDER_OF_TERM.get(new_word) != GENDER_OF_TERM[swappable.word]:
        raise ValueError(f"a swap keeps the person's gender: {swappable.word!r} -> {new_word!r}")
    a, b, _ = example.edges[swappable.edge]
    if swappable.names_target:
        relation: str | None = new_word
    else:  # the word names a: "b's new_word is a"
        relation = inverse_relation(new_word, GENDER_NAMES.get(example.genders[b]))
    if relation is None:
        return None
    edges = list(example.edges)
    edges[swappable.edge] = (a, b, relation)
    path = relation_path(edges, *example.query)
    if path is None or (answer := chain_answer(path)) is None:
        return None
    written = example.story[swappable.start : swappable.end]
    if written[:1].isupper():
        new_word = new_word.capitalize()
    story = example.story[: swappable.start] + new_word + example.story[swappable.end :]
    return dataclasses.replace(example, story=story, edges=edges, path=path, target=answer)


def relation_swapped(example: Any, rng: random.Random, swappable: list[SwappableEdge] | None = None) -> Any:
    """``example`` with one of its swappable edges' words swapped for a random one of the same gender, not
    already in its sentence, whose chain composes; ``example`` itself when none does. ``swappable``: the edges
    to draw from (default: :func:`swappable_edges` of uncrowded sentences)."""
    candidates = swappable_edges(example) if swappable is None else swappable
    for edge in rng.sample(candidates, len(candidates)):
        gender = GENDER_OF_TERM[edge.word]
        words = [w for w in SWAP_WORDS if GENDER_OF_TERM[w] == gender and w not in {edge.word, *edge.sentence_words}]
        for word in rng.sample(words, len(words)):
            swapped = swap_relation_word(example, edge, word)
            if swapped is not None:
                return swapped
    return example


class RelationSwap:
    """Training augmentation for :class:`~laart_lab.data.clutrr_text.TextCollator`: a share of the
    examples of each batch get :func:`relation_swapped`. Draws come from torch's generator, as the
    collator's other draws do, so a seeded run swaps the same stories. ``crowded``: swap in crowded
    sentences too (:func:`swappable_edges`)."""

    def __init__(self, share: float, crowded: bool = False) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"relation_swap is a share of training stories, in [0, 1]; got {share}")
        self.share, self.crowded = share, crowded
        self._swappable: dict[str, list[SwappableEdge]] = {}  # by example id: the search reads every sentence

    def __call__(self, examples: list[Any]) -> list[Any]:
        draws = torch.rand(len(examples)).tolist()
        seeds = torch.randint(0, 2**31 - 1, (len(examples),)).tolist()
        return [
            relation_swapped(e, random.Random(seed), self._edges(e)) if draw < self.share else e
            for e, draw, seed in zip(examples, draws, seeds)
        ]

    def _edges(self, example: Any) -> list[SwappableEdge]:
        if example.id not in self._swappable:
            self._swappable[example.id] = swappable_edges(example, self.crowded)
        return self._swappable[example.id]
