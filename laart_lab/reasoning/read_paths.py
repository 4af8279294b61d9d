"""From relations read out of a story to the chain of relations a reasoner composes.

LAART's reader scores every ordered pair of entities; the slow system needs the *path* of relations
from the query's head to its tail. :func:`best_paths` finds, per story, the most confident chain of
read facts: the shortest path in the graph of entities whose edge ``x -> y`` costs
``-log P(x and y are related) + step_cost`` (Dijkstra; at most ``max_steps`` steps; ``step_cost``
prefers fewer compositions among equally confident chains). A story whose query entities are not
connected by any read fact gets the direct pair, so the reasoner still answers.

:func:`k_best_paths` gives the ``k`` cheapest loopless chains (Yen's algorithm) with their costs, so that a
slow system can weigh several readings of a long story instead of trusting one chain.
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
    return [chains[0][0] for chains in k_best_paths(related, entity_mask, query, 1, max_steps, step_cost)]


def k_best_paths(
    related: Tensor, entity_mask: Tensor, query: Tensor, k: int, max_steps: int = 16, step_cost: float = 0.05
) -> list[list[tuple[list[int], float]]]:
    """Per story, up to ``k`` loopless chains ``[head, ..., tail]`` with their costs, cheapest first (the first is
    :func:`best_paths`'s). Arguments as :func:`best_paths`; a story with fewer chains gets fewer."""
    if k < 1:
        raise ValueError(f"k counts chains (>= 1); got {k}")
    cost, mask = _step_costs(related, step_cost), entity_mask.cpu()
    out = []
    for b in range(cost.shape[0]):
        n = int(mask[b].sum())
        grid = cost[b, :n, :n].tolist()
        chains = _yen(grid, int(query[b, 0]), int(query[b, 1]), k, max_steps)
        out.append([(chain, _chain_cost(grid, chain)) for chain in chains])
    return out


def _step_costs(related: Tensor, step_cost: float) -> Tensor:
    """``-log P(related) + step_cost`` per ordered pair, on the CPU (the searches run in Python)."""
    return (-torch.log(related.detach().float().clamp(1e-6, 1.0)) + step_cost).cpu()


def _chain_cost(cost: list[list[float]], chain: list[int]) -> float:
    return sum(cost[a][c] for a, c in zip(chain[:-1], chain[1:]))


def _yen(cost: list[list[float]], head: int, tail: int, k: int, max_steps: int) -> list[list[int]]:
    """Yen's k shortest loopless paths over :func:`_dijkstra`: each next chain leaves a found one at some node
    (the spur), with that chain's next step and the earlier nodes taken out of the graph."""
    found = [_dijkstra(cost, head, tail, max_steps)]
    candidates: list[tuple[float, list[int]]] = []
    seen = {tuple(found[0])}
    while len(found) < k:
        last = found[-1]
        for i in range(len(last) - 1):
            root = last[: i + 1]
            pruned = [row[:] for row in cost]
            for chain in found:
                if chain[: i + 1] == root and len(chain) > i + 1:
                    pruned[chain[i]][chain[i + 1]] = math.inf
            for node in root[:-1]:  # loopless: the root's earlier nodes are out
                for other in range(len(pruned)):
                    pruned[node][other] = pruned[other][node] = math.inf
            spur = _dijkstra(pruned, root[-1], tail, max_steps - i)
            if spur[-1] != tail or math.isinf(_chain_cost(pruned, spur)):  # no way on from this spur
                continue
            chain = root[:-1] + spur
            if tuple(chain) not in seen:
                seen.add(tuple(chain))
                heapq.heappush(candidates, (_chain_cost(cost, chain), chain))
        if not candidates:
            break
        found.append(heapq.heappop(candidates)[1])
    return found


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
