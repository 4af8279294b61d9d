"""A concept layer that grows when its inputs are poorly explained and is consolidated in "thinking" phases.

Hidden states read from a set of *concepts*. Each concept ``i`` has a key direction ``c_i`` and a
value ``v_i`` (both ``d_model``); a hidden state ``h`` reads

    out = h + sum_i active_i * sigmoid(scale * cos(h, c_i) + bias) * v_i

Why these choices:

* **sigmoid, not softmax, weights**: each concept's contribution is independent of the others, so a
  new concept with ``v_i = 0`` leaves the output exactly unchanged (growth keeps the function), and
  two near-identical concepts can be merged into one with the summed value (consolidation keeps
  the function approximately);
* **fixed capacity + active mask**: ``concepts`` and ``values`` are ``[capacity, d_model]`` parameters
  created once, so the optimizer sees the same tensors for the whole run and keeps its state for the
  existing rows; growing activates free rows (which then receive gradients; inactive rows get
  exactly zero gradient) instead of creating new tensors the optimizer would not know;
* **cosine similarity**: novelty and seeding happen in the same normalised space the read-out uses.

Signals, accumulated during training forward passes (not part of the graph):

* novelty = share of hidden states whose best cosine similarity to an active concept is below
  ``novelty_threshold``; a reservoir (ring buffer) keeps a strided sample of those poorly explained
  states;
* usage = share of hidden states that a concept explains: it is their best match, with a similarity of at
  least ``novelty_threshold``.

Operations (called by :class:`laart_lab.callbacks.ConceptGrowth`, which also makes them agree across
DDP ranks): :meth:`grow` seeds new concepts at the centres of a small spherical k-means over poorly
explained states; :meth:`consolidate` merges near-duplicate concepts and retires unused ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from laart_lab.components.memory import MemoryModule

__all__ = ["ConceptLayer", "ConsolidationResult", "spherical_kmeans"]


@torch.no_grad()
def spherical_kmeans(points: Tensor, k: int, iters: int = 10, avoid: Tensor | None = None) -> Tensor:
    """Deterministic cosine k-means: ``k`` unit centres ``[k, dim]`` of unit ``points [n, dim]``.

    Initialisation is farthest-point (k-means++ without randomness): the first centre is the point
    least similar to ``avoid`` (existing concepts; or point 0), each next one the point least similar
    to the centres chosen so far. Same input -> same output, on every rank.
    """
    points = F.normalize(points.float(), dim=-1)
    n = points.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"spherical_kmeans: need 1 <= k <= number of points ({n}), got k={k}")
    if avoid is not None and avoid.numel():
        closeness = (points @ F.normalize(avoid.float(), dim=-1).T).max(dim=1).values
        first = int(closeness.argmin())
    else:
        first = 0
    chosen = [first]
    closeness = points @ points[first]
    for _ in range(1, k):
        nxt = int(closeness.argmin())
        chosen.append(nxt)
        closeness = torch.maximum(closeness, points @ points[nxt])
    centres = points[chosen].clone()
    for _ in range(iters):
        assign = (points @ centres.T).argmax(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k)
        centres = torch.where(counts[:, None] > 0, F.normalize(sums, dim=-1), centres)
    return centres


@dataclass
class ConsolidationResult:
    """What one thinking phase did: ``merges`` pairs folded into one, ``retired`` concepts removed."""

    merges: int
    retired: int
    changed: Tensor  # indices of rows whose parameters changed (their optimizer state is now stale)


class ConceptLayer(MemoryModule):
    """Growing concept memory read by the hidden states of one block (``transform_hidden`` hook).

    Args:
        d_model: model width (given by the model).
        n_heads: unused (the factory signature is ``(d_model, n_heads)``).
        capacity: maximum number of concepts (rows of the parameters).
        initial: concepts active at the start (random directions, zero values).
        novelty_threshold: a state whose best cosine similarity is below this is "poorly explained".
        reservoir: poorly explained states kept (ring buffer) to seed new concepts from.
        per_batch: at most this many poorly explained states enter the reservoir per forward pass.
        scale, bias: initial read-out sharpness and offset (learned).
        seed: seed of the random initial directions.
    """

    active: Tensor  # bool [capacity] buffer: rows in use
    fresh: Tensor  # bool [capacity] buffer: grown since the last consolidation

    def __init__(
        self,
        d_model: int,
        n_heads: int = 1,
        capacity: int = 64,
        initial: int = 8,
        novelty_threshold: float = 0.5,
        reservoir: int = 512,
        per_batch: int = 64,
        scale: float = 10.0,
        bias: float = -5.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0 < initial <= capacity:
            raise ValueError(f"ConceptLayer: need 0 < initial <= capacity, got initial={initial}, capacity={capacity}")
        if not -1.0 <= novelty_threshold <= 1.0:
            raise ValueError(f"ConceptLayer: novelty_threshold is a cosine in [-1, 1], got {novelty_threshold}")
        self.d_model, self.capacity = d_model, capacity
        self.novelty_threshold, self.reservoir_size, self.per_batch = novelty_threshold, reservoir, per_batch
        generator = torch.Generator().manual_seed(seed)
        self.concepts = nn.Parameter(F.normalize(torch.randn(capacity, d_model, generator=generator), dim=-1))
        self.values = nn.Parameter(torch.zeros(capacity, d_model))
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.bias = nn.Parameter(torch.tensor(float(bias)))
        active = torch.zeros(capacity, dtype=torch.bool)
        active[:initial] = True
        self.register_buffer("active", active)
        # Grown since the last consolidation: exempt from retirement until it has been observed a full period.
        self.register_buffer("fresh", torch.zeros(capacity, dtype=torch.bool))
        self.clear_novelty()
        self.clear_usage()
        self._reservoir: Tensor | None = None
        self._reservoir_count = 0

    # ------------------------------------------------------------------ read-out
    @property
    def num_active(self) -> int:
        return int(self.active.sum())

    def similarities(self, hidden: Tensor) -> Tensor:
        """Cosine similarity of every hidden state to every concept: ``[..., capacity]``."""
        return F.normalize(hidden, dim=-1) @ F.normalize(self.concepts, dim=-1).T.to(hidden.dtype)

    def transform_hidden(self, hidden: Tensor) -> Tensor:
        cos = self.similarities(hidden)
        mask = self.active.to(hidden.dtype)
        weights = torch.sigmoid(self.scale * cos + self.bias) * mask
        out = hidden + weights @ self.values.to(hidden.dtype)
        if self.training:
            self._observe(hidden.detach(), cos.detach())
        return out

    # ------------------------------------------------------------------ statistics
    def clear_novelty(self) -> None:
        self.seen = torch.zeros((), dtype=torch.float64)
        self.novel = torch.zeros((), dtype=torch.float64)

    def clear_usage(self) -> None:
        self.usage = torch.zeros(self.capacity, dtype=torch.float64)
        self.usage_seen = torch.zeros((), dtype=torch.float64)

    @torch.no_grad()
    def _observe(self, hidden: Tensor, cos: Tensor) -> None:
        flat_h = hidden.reshape(-1, hidden.shape[-1]).float()
        flat_cos = cos.reshape(-1, cos.shape[-1]).float().masked_fill(~self.active, float("-inf"))
        best, best_index = flat_cos.max(dim=1)
        novel = best < self.novelty_threshold
        n = flat_h.shape[0]
        device = flat_h.device
        self.seen, self.novel = self.seen.to(device) + n, self.novel.to(device) + novel.sum()
        self.usage = self.usage.to(device).index_add_(0, best_index, (~novel).to(torch.float64))
        self.usage_seen = self.usage_seen.to(device) + n
        picked = flat_h[novel]
        if picked.shape[0] > self.per_batch:  # strided sample: deterministic, no RNG consumed
            picked = picked[torch.linspace(0, picked.shape[0] - 1, self.per_batch, device=device).long()]
        self._push_reservoir(F.normalize(picked, dim=-1))

    def _push_reservoir(self, states: Tensor) -> None:
        if self._reservoir is None or self._reservoir.device != states.device:
            self._reservoir = torch.zeros(self.reservoir_size, self.d_model, device=states.device)
            self._reservoir_count = 0
        states = states[-self.reservoir_size :]
        slots = (self._reservoir_count + torch.arange(states.shape[0], device=states.device)) % self.reservoir_size
        self._reservoir[slots] = states.to(self._reservoir.dtype)
        self._reservoir_count += states.shape[0]

    def poorly_explained(self) -> Tensor:
        """The reservoir of poorly explained (unit) states seen since the last growth ``[n, d_model]``."""
        if self._reservoir is None:
            return torch.zeros(0, self.d_model, device=self.concepts.device)
        return self._reservoir[: min(self._reservoir_count, self.reservoir_size)].clone()

    def clear_reservoir(self) -> None:
        self._reservoir, self._reservoir_count = None, 0

    def novelty_rate(self) -> float:
        return float(self.novel / self.seen) if float(self.seen) > 0 else 0.0

    def usage_share(self) -> Tensor:
        """Share of observed hidden states each concept explains (best match, not novel) ``[capacity]``."""
        seen = float(self.usage_seen)
        return (self.usage / seen).float() if seen > 0 else torch.zeros(self.capacity, device=self.usage.device)

    def get_extra_state(self) -> dict[str, Any]:
        """Statistics gathered since the last growth/consolidation, so a resumed run decides the same."""
        return {
            "seen": self.seen.cpu(),
            "novel": self.novel.cpu(),
            "usage": self.usage.cpu(),
            "usage_seen": self.usage_seen.cpu(),
            "reservoir": self.poorly_explained().cpu(),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        device = self.concepts.device
        self.seen, self.novel = state["seen"].to(device), state["novel"].to(device)
        self.usage, self.usage_seen = state["usage"].to(device), state["usage_seen"].to(device)
        self.clear_reservoir()
        if state["reservoir"].shape[0]:
            self._push_reservoir(state["reservoir"].to(device))

    # ------------------------------------------------------------------ growth and consolidation
    @torch.no_grad()
    def grow(self, candidates: Tensor, max_new: int, kmeans_iters: int = 10) -> Tensor:
        """Activate up to ``max_new`` free rows at k-means centres of ``candidates``; return their indices.

        New values are zero, so the layer's output is unchanged until the optimizer trains them.
        """
        free = (~self.active).nonzero().flatten()
        k = min(max_new, free.numel(), candidates.shape[0])
        if k <= 0:
            return free[:0]
        existing = self.concepts[self.active]
        centres = spherical_kmeans(candidates.to(self.concepts.device), k, kmeans_iters, avoid=existing)
        rows = free[:k]
        self.concepts[rows] = centres.to(self.concepts.dtype)
        self.values[rows] = 0
        self.active[rows] = True
        self.fresh[rows] = True
        return rows

    @torch.no_grad()
    def consolidate(
        self, usage: Tensor | None = None, merge_threshold: float = 0.9, retire_below: float = 0.0, min_active: int = 1
    ) -> ConsolidationResult:
        """Merge near-duplicate concepts (cosine > ``merge_threshold``) and retire unused ones.

        A merge keeps the more used concept of the pair at the usage-weighted mean direction with the
        *sum* of both values (their read-outs were nearly the same, so the sum keeps the function
        approximately). Retirement deactivates concepts whose usage share is ``<= retire_below``
        (never ones grown since the last consolidation, never below ``min_active``). ``usage``
        defaults to this module's own :meth:`usage_share` (the callback passes the all-reduced one).
        """
        usage = (self.usage_share() if usage is None else usage).to(self.concepts.device).float().clone()
        changed: list[int] = []
        merges = 0
        active = self.active.nonzero().flatten()
        if active.numel() > 1:
            unit = F.normalize(self.concepts[active].float(), dim=-1)
            cos = (unit @ unit.T).triu(diagonal=1)
            pairs = (cos > merge_threshold).nonzero()
            order = cos[pairs[:, 0], pairs[:, 1]].argsort(descending=True)
            for a, b in pairs[order].tolist():
                i, j = int(active[a]), int(active[b])
                if not (self.active[i] and self.active[j]) or self.num_active <= min_active:
                    continue
                keep, drop = (i, j) if usage[i] >= usage[j] else (j, i)
                wk, wd = float(usage[keep]) + 1e-6, float(usage[drop]) + 1e-6
                direction = wk * F.normalize(self.concepts[keep], dim=0) + wd * F.normalize(self.concepts[drop], dim=0)
                self.concepts[keep] = F.normalize(direction, dim=0)
                self.values[keep] += self.values[drop]
                usage[keep] += usage[drop]
                self._deactivate(drop)
                changed += [keep, drop]
                merges += 1
        retired = 0
        for i in self.active.nonzero().flatten().tolist():
            if self.num_active <= min_active:
                break
            if usage[i] <= retire_below and not self.fresh[i]:
                self._deactivate(i)
                changed.append(i)
                retired += 1
        self.fresh.zero_()
        return ConsolidationResult(merges, retired, torch.tensor(sorted(set(changed)), dtype=torch.long))

    def _deactivate(self, row: int) -> None:
        self.active[row] = False
        self.fresh[row] = False
        self.values[row] = 0

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, capacity={self.capacity}, novelty_threshold={self.novelty_threshold}"
