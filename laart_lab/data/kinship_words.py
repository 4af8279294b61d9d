"""The words a story uses for kinship, and the *kind* of link each one names.

A reader that must take a relation from its kinship word (``StoryReader(relation_head="kinship_word")``)
needs to know which tokens are kinship words and what kind of link each names: "mom" and "mother" name a
parent, "kids" a child, "married" a spouse. This is the lexicon, in the kinds of
:mod:`laart_lab.data.kinship_algebra` (gender-free: the gender comes from the person, not the word).

In-law terms are several tokens ("son - in - law"): the kinship word followed within
:data:`IN_LAW_WINDOW` tokens by "law" names the in-law kind (son -> child_in_law). Kinds with no in-law
relation in CLUTRR's vocabulary ("sister-in-law") are not read as kinship words at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from laart_lab.data.kinship_algebra import KIND_OF

_EXTRA_WORDS: dict[str, tuple[str, ...]] = {
    "parent": ("dad", "mom", "daddy", "mommy", "mum", "papa", "mama", "parent", "parents", "fathers", "mothers"),
    "child": ("sons", "daughters", "child", "children", "kid", "kids"),
    "sibling": ("brothers", "sisters", "sibling", "siblings", "bro", "sis"),
    "spouse": ("husbands", "wives", "married", "marriage", "spouse", "hubby"),
    "grandparent": ("grandpa", "grandma", "granny", "grandparent", "grandparents", "granddad", "grandad", "granfather"),
    "grandchild": ("grandsons", "granddaughters", "grandchild", "grandchildren", "grandkids", "grandaughter"),
    "parent_sibling": ("uncles", "aunts", "auntie", "aunty"),
    "sibling_child": ("nephews", "nieces"),
}
#: kinship word (lower case, one token) -> the kind of link it names
KINSHIP_WORDS: dict[str, str] = {
    **{term: kind for term, kind in KIND_OF.items() if "-" not in term},
    **{word: kind for kind, words in _EXTRA_WORDS.items() for word in words},
}
#: a kinship word followed by "law" within this many tokens names the in-law kind ("son - in - law")
IN_LAW_WINDOW = 4
IN_LAW_OF: dict[str, str] = {"parent": "parent_in_law", "child": "child_in_law"}


def vocabulary_kinds(vocabulary: Sequence[str], kinds: Sequence[str]) -> list[int]:
    """Per word id of ``vocabulary``: the index in ``kinds`` of the kind it names, or -1."""
    index = {kind: i for i, kind in enumerate(kinds)}
    return [index.get(KINSHIP_WORDS.get(word, ""), -1) for word in vocabulary]


def in_law_kinds(kinds: Sequence[str]) -> list[int]:
    """Per kind index: the index of its in-law kind, or -1 (that word is then no kinship word before "law")."""
    index = {kind: i for i, kind in enumerate(kinds)}
    return [index.get(IN_LAW_OF.get(kind, ""), -1) for kind in kinds]


def token_kinds(tokens: Tensor, word_kind: Tensor, in_law_kind: Tensor, law_id: int | None) -> Tensor:
    """``[B, T]`` word ids -> the kind each token names (-1: none), in-law terms read as one word.

    ``word_kind`` ([V], from :func:`vocabulary_kinds`) and ``in_law_kind`` ([K], from :func:`in_law_kinds`)
    are tensors; ``law_id`` is the word id of "law" (None when the vocabulary has no such word).
    """
    kind = word_kind[tokens]
    if law_id is None:
        return kind
    law_after = torch.zeros_like(tokens, dtype=torch.bool)
    for shift in range(1, IN_LAW_WINDOW + 1):
        law_after[:, :-shift] |= tokens[:, shift:] == law_id
    in_law = in_law_kind[kind.clamp_min(0)]
    return torch.where((kind >= 0) & law_after, in_law, kind)
