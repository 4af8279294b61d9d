"""Kinship algebra for *supervising a reader*: inverses and the compositions that always hold.

LAART's reader learns which relation the story states between two people. The gold graph names only
the chain edges ``x -r-> y``, stated in either direction and often beside other true facts (a sentence
"[y] went out with her parents [x] and [z]" states x-y and z-y, while the chain holds x-z). Labelling
every other co-mentioned pair "no relation" would teach the reader wrong facts, so training labels
come from the gold chain through this algebra:

* :func:`inverse_relation`: "x's son is y" means "y's father (or mother, by x's gender) is x";
* :func:`compose`: "x's r1 is z" and "z's r2 is y" give "x's r is y" when the pair ``(r1, r2)``
  names the same relation in every family world of :mod:`laart_lab.data.kinship` (father ∘ wife =
  mother); pairs whose result depends on the family (son ∘ aunt: sister or sister-in-law?) give None.

Only training labels use it; the SLRM still learns composition from the answers alone.
"""

from __future__ import annotations

import functools
import random

from laart_lab.data.kinship import _TERMS, FEMALE, MALE, World, composition_rules

INVERSE_KIND: dict[str, str] = {
    "parent": "child",
    "child": "parent",
    "spouse": "spouse",
    "sibling": "sibling",
    "grandparent": "grandchild",
    "grandchild": "grandparent",
    "parent_sibling": "sibling_child",
    "sibling_child": "parent_sibling",
    "parent_in_law": "child_in_law",
    "child_in_law": "parent_in_law",
}
KIND_OF: dict[str, str] = {term: kind for kind, terms in _TERMS.items() for term in terms}
GENDER_OF_TERM: dict[str, str] = {term: (MALE, FEMALE)[i] for terms in _TERMS.values() for i, term in enumerate(terms)}


def inverse_relation(relation: str, source_gender: str | None) -> str | None:
    """The relation of ``y`` to ``x`` given "x's ``relation`` is y" and x's gender ('male'/'female').

    None when the relation is not a kinship term or x's gender is unknown.
    """
    kind = KIND_OF.get(relation)
    if kind is None or source_gender not in (MALE, FEMALE):
        return None
    male, female = _TERMS[INVERSE_KIND[kind]]
    return male if source_gender == MALE else female


@functools.cache
def _rules() -> dict[tuple[str, str], str]:
    # the worlds of a fixed seed: the rules are the same for every seed (they are facts of kinship)
    rng = random.Random(0)
    return composition_rules([World(rng) for _ in range(64)])


def compose(first: str, second: str) -> str | None:
    """``first ∘ second`` when it names one relation in every family world, else None."""
    return _rules().get((first, second))
