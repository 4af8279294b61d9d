"""From relations read out of a story to the chain of relations a reasoner composes.

LAART's reader scores every ordered pair of entities; the slow system needs the *path* of relations
from the query's head to its tail. :func:`best_paths` finds, per story, the most confident chain of
read facts: the shortest path in the graph of entities whose edge ``x -> y`` costs
``-log P(x and y are related) + step_cost`` (Dijkstra; at most ``max_steps`` steps; ``step_cost``
prefers fewer compositions among equally confident chains). A story whose query entities are not
connected by any read fact gets the direct pair, so the reasoner still answers.
"""

from __future__ import annotations

import heapq
import math

import torch
from torch import Tensor


def best_paths(
    related: Tensor, entity_mask: Tensor, query: Tensor, max_steps: int = 16, step_cost: float = 0.05
) -> list[list[int]]:
    """Entity sequences ``[head, ..., tail]``, one per story.

    Args:
        related: ``[B, E, E]`` probability that "y is x's <some relation>" is stated (1 - P(none)).
        entity_mask: ``bool [B, E]`` real entities; query: ``long [B, 2]`` head and tail entities.
        max_steps: the longest path returned (longer chains are cut at the direct pair).
        step_cost: added to every step's cost.
    """
    cost = (-torch.log(related.detach().float().clamp(1e-6, 1.0)) + step_cost).cpu()
    mask = entity_mask.cpu()
    paths = []
    for b in range(cost.shape[0]):
        n = int(mask[b].sum())
        head, tail = int(query[b, 0]), int(query[b, 1])
        paths.append(_dijkstra(cost[b, :n, :n].tolist(), head, tail, max_steps))
    return paths


def _dijkstra(cost: list[list[float]], head: int, tail: int, max_steps: int) -> list[int]:
    best: dict[tuple[int, int], float] = {(head, 0): 0.0}
    previous: dict[tuple[int, int], tuple[int, int]] = {}
    queue = [(0.0, head, 0)]
    while queue:
        total, node, steps = heapq.heappop(queue)
        if node == tail:
            path = [node]
            state = (node, steps)
            while state in previous:
                state = previous[state]
                path.append(state[0])
            return path[::-1]
        if total > best.get((node, steps), math.inf) or steps == max_steps:
            continue
        for nxt, step in enumerate(cost[node]):
            if nxt in (node, head):
                continue
            candidate = total + step
            if candidate < best.get((nxt, steps + 1), math.inf):
                best[(nxt, steps + 1)] = candidate
                previous[(nxt, steps + 1)] = (node, steps)
                heapq.heappush(queue, (candidate, nxt, steps + 1))
    return [head, tail]
