"""Synchronisation: the CTM's representation is how pairs of neurons co-fire over the ticks.

For a selected pair ``(i, j)`` and post-activations ``z^1 .. z^t``, the synchronisation at tick t is

    S_ij(t) = sum_{s<=t} exp(-r_ij (t - s)) z_i^s z_j^s  /  sqrt(sum_{s<=t} exp(-r_ij (t - s)))

with a learnable decay ``r_ij >= 0`` per pair (``r = 0``: all ticks count equally; large ``r``: only
the latest ticks count). Both sums obey a linear recurrence, so each tick costs O(pairs):
``alpha <- e^{-r} alpha + z_i z_j`` and ``beta <- e^{-r} beta + 1``.

Pairs are chosen at random once ("random pairing", the paper's default) from a seeded generator and
kept as buffers, so a checkpoint reproduces them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

MAX_DECAY = 15.0  # exp(-15) ~ 3e-7: beyond this the pair only sees the current tick anyway


@dataclass
class SyncState:
    """Running sums of one synchronisation read-out."""

    alpha: Tensor  #: [B, P] decayed sum of z_i z_j
    beta: Tensor  #: [B, P] decayed count of ticks


class Synchronisation(nn.Module):
    """Synchronisation of ``pairs`` neuron pairs out of ``neurons``, with learnable decay per pair."""

    left: Tensor  #: long [P] first neuron of each pair (buffer)
    right: Tensor  #: long [P] second neuron of each pair (buffer)

    def __init__(
        self, neurons: int, pairs: int, self_pairs: int = 0, seed: int = 0, decay_init: float = 0.0
    ) -> None:
        super().__init__()
        if pairs < 1 or not 0 <= self_pairs <= pairs:
            raise ValueError(
                f"Synchronisation needs pairs >= 1 and 0 <= self_pairs <= pairs; got {pairs}, {self_pairs}"
            )
        generator = torch.Generator().manual_seed(seed)
        left = torch.randint(0, neurons, (pairs,), generator=generator)
        right = torch.randint(0, neurons, (pairs,), generator=generator)
        right[:self_pairs] = left[:self_pairs]  # a few i-i pairs keep a "snapshot" of single neurons
        self.register_buffer("left", left)
        self.register_buffer("right", right)
        if not 0.0 <= decay_init <= MAX_DECAY:
            raise ValueError(f"Synchronisation decay_init must be in [0, {MAX_DECAY}]; got {decay_init}")
        self.decay = nn.Parameter(torch.full((pairs,), float(decay_init)))

    @property
    def size(self) -> int:
        return int(self.left.numel())

    def decay_factor(self) -> Tensor:
        """``exp(-r)`` with ``r`` clamped to ``[0, MAX_DECAY]``.

        The clamp is applied to the parameter itself (as the CTM authors do) so that a decay pushed
        below 0 is put back instead of sitting in the clamp's zero-gradient region forever. It writes
        through ``.data``, which autograd does not version: a model may run the CTM more than once
        before one backward pass (LAART does: on the gold chain and on the read chain).
        """
        if self.training:
            self.decay.data.clamp_(0.0, MAX_DECAY)
        return torch.exp(-self.decay.clamp(0.0, MAX_DECAY))

    def step(self, post: Tensor, state: SyncState | None, factor: Tensor) -> tuple[Tensor, SyncState]:
        """Fold in one tick's post-activations ``post`` [B, D]; returns synchronisation [B, P], new state."""
        product = post[:, self.left] * post[:, self.right]
        if state is None:
            state = SyncState(product, torch.ones_like(product))
        else:
            state = SyncState(factor * state.alpha + product, factor * state.beta + 1.0)
        return state.alpha / torch.sqrt(state.beta), state
