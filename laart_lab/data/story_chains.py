"""Long stories from short ones: a validation that shows what CLUTRR's long test stories ask.

CLUTRR trains on chains of k = 2, 3 relations and tests on k up to 10. A validation split of the training
file holds only short stories, so it cannot show how a model composes over long ones (which chain of
read facts it walks, how errors add up). CLUTRR itself writes a long story from the crowd-written
texts of short sub-chains; :func:`chained_stories` does the same with stories a model has not trained on:

* pick two or three stories; in each next one, the query's head person takes the name of the previous
  story's query tail (so their genders must agree), and every other person is renamed apart;
* the joined story is the stories' texts, each kept whole (its pronouns refer within it), in a shuffled
  order; its gold edges are all the parts' edges, its chain their chains in order;
* the query runs from the first story's head to the last story's tail, and the answer is the parts'
  answers composed with the kinship algebra (:func:`~laart_lab.data.kinship_algebra.compose`); a chain
  whose answer the algebra cannot name for every family (son ∘ aunt) is not built.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from laart_lab.data.clutrr_text import ended_sentences, renamed_mentions
from laart_lab.data.kinship_algebra import compose


def joined_story(parts: Sequence[Any], order_seed: int) -> Any | None:
    """One story of the :class:`~laart_lab.data.clutrr.ClutrrExample` s ``parts`` joined at their query
    people (``parts[j]``'s query tail is ``parts[j + 1]``'s query head), or None when they cannot be joined:
    a joint's two people differ in gender (or either is unknown), or the composed answer is not one relation."""
    target = parts[0].target
    for previous, part in zip(parts[:-1], parts[1:]):
        tail_gender, head_gender = previous.genders[previous.query[1]], part.genders[part.query[0]]
        if tail_gender not in (1, 2) or tail_gender != head_gender:
            return None
        target = compose(target, part.target)
        if target is None:
            return None
    names: list[str] = []
    genders: list[int] = []
    edges: list[tuple[int, int, str]] = []
    untyped: list[tuple[int, int]] = []
    texts: list[str] = []
    joint: int | None = None  # the node of the previous part's query tail
    for j, part in enumerate(parts):
        node_of: dict[int, int] = {}
        rename: dict[str, str] = {}
        for node, name in enumerate(part.names):
            if j > 0 and node == part.query[0]:
                assert joint is not None
                node_of[node] = joint
                rename[name.strip().lower()] = names[joint]
            else:
                node_of[node] = len(names)
                new_name = name if j == 0 else f"{name} {j}"  # renamed apart from the other parts' people
                rename[name.strip().lower()] = new_name
                names.append(new_name)
                genders.append(part.genders[node])
        edges += [(node_of[a], node_of[b], relation) for a, b, relation in part.edges]
        untyped += [(node_of[a], node_of[b]) for a, b in part.untyped_edges]
        texts.append(" ".join(ended_sentences(_renamed(part.story, rename))))
        joint = node_of[part.query[1]]
    random.Random(order_seed).shuffle(texts)
    assert joint is not None
    head_node = parts[0].query[0]  # the first part's people keep their node numbers
    return replace(
        parts[0],
        id="+".join(part.id for part in parts),
        story=" ".join(texts),
        query_text=f"('{names[head_node]}', '{names[joint]}')",
        target=target,
        edges=edges,
        query=(head_node, joint),
        genders=genders,
        path=[relation for part in parts for relation in part.path],
        k=sum(part.k for part in parts),
        names=names,
        untyped_edges=untyped,
    )


def _renamed(story: str, rename: dict[str, str]) -> str:
    """``story`` with each bracketed name (lower-cased) replaced by ``rename``'s."""
    return renamed_mentions(story, lambda name: rename.get(name.strip().lower(), name))


def chained_stories(
    rows: Sequence[Any], count: int, seed: int, parts: Sequence[int] = (2, 3), max_entities: int | None = None
) -> list[Any]:
    """``count`` stories joined from ``rows`` (:func:`joined_story`), seeded; the i-th joins
    ``parts[i % len(parts)]`` distinct rows. Each next row is drawn among those whose query head has the
    gender of the running tail and whose answer composes with the running answer. ``max_entities``: skip
    chains that would name more people. Fewer than ``count`` come back only when ``rows`` cannot give them
    (each chain is tried a bounded number of times)."""
    if count < 0:
        raise ValueError(f"count is a number of stories (>= 0); got {count}")
    if any(n < 2 for n in parts) or not parts:
        raise ValueError(f"parts are the numbers of stories joined into one (each >= 2); got {list(parts)}")
    by_head_gender: dict[int, list[Any]] = {1: [], 2: []}
    for row in rows:
        gender = row.genders[row.query[0]]
        if gender in by_head_gender:
            by_head_gender[gender].append(row)
    rng = random.Random(seed)
    out: list[Any] = []
    for i in range(count):
        for _attempt in range(50):
            chain = _draw_chain(rows, by_head_gender, parts[i % len(parts)], rng)
            if chain is None:
                continue
            story = joined_story(chain, rng.randrange(2**31))
            if story is not None and (max_entities is None or len(story.names) <= max_entities):
                out.append(story)
                break
    return out


def _draw_chain(
    rows: Sequence[Any], by_head_gender: dict[int, list[Any]], n: int, rng: random.Random
) -> list[Any] | None:
    chain = [rows[rng.randrange(len(rows))]]
    target = chain[0].target
    while len(chain) < n:
        tail_gender = chain[-1].genders[chain[-1].query[1]]
        candidates = by_head_gender.get(tail_gender, [])
        for _ in range(20):
            if not candidates:
                return None
            nxt = candidates[rng.randrange(len(candidates))]
            composed = compose(target, nxt.target)
            if composed is not None and all(nxt is not row for row in chain):
                chain.append(nxt)
                target = composed
                break
        else:
            return None
    return chain
