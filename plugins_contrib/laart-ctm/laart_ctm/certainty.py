"""Certainty and the CTM's certainty-based loss over internal ticks.

A CTM predicts at every tick ``t = 1..T``. Its certainty at a tick is ``1 - normalised entropy`` of
that prediction (1: one-hot, 0: uniform). Training does not pick a fixed tick: for each example it
takes the cross-entropy at the tick where the loss is lowest and at the tick where the model is most
certain, and averages the two. The model is thereby free to "think" for as long as an example
needs, and is pushed to become certain exactly when it is right.

Shapes: ``logits`` are ``[B, T, *S, C]`` (classes last; ``S`` are extra prediction positions, e.g.
one per bit in cumulative parity, and empty for one answer per example), ``target`` is ``[B, *S]``.

Where an example has several answers (``S`` not empty) the ticks can be chosen two ways:

* **per example** (the paper): certainty and cross-entropy are averaged over the positions first,
  and every position of an example is read at the same tick;
* **per position**: each position has its own certainty, lowest-loss tick and most-certain tick, so
  answers that become known at different ticks (running parity ``k`` is known once bit ``k`` has
  been read) need not all be held until one common tick.

The functions below take the certainty as ``[B, T]`` for the first and ``[B, T, *S]`` for the second.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def normalised_entropy(logits: Tensor) -> Tensor:
    """Entropy of ``softmax(logits)`` over the last dim divided by ``log C`` (in ``[0, 1]``)."""
    classes = logits.shape[-1]
    if classes < 2:
        return torch.zeros(logits.shape[:-1], device=logits.device, dtype=logits.dtype)
    log_p = F.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1) / math.log(classes)


def tick_certainty(logits: Tensor) -> Tensor:
    """``[B, T, *S, C]`` -> ``[B, T]``: ``1 -`` normalised entropy, averaged over the positions ``S``."""
    return position_certainty(logits).reshape(*logits.shape[:2], -1).mean(dim=2)


def position_certainty(logits: Tensor) -> Tensor:
    """``[B, T, *S, C]`` -> ``[B, T, *S]``: ``1 -`` normalised entropy of every position's answer."""
    return 1.0 - normalised_entropy(logits)


def per_tick_cross_entropy(logits: Tensor, target: Tensor, per_position: bool = False) -> Tensor:
    """Cross-entropy of each tick's prediction: ``[B, T]`` averaged over the positions ``S``, or
    ``[B, T, *S]`` with ``per_position``."""
    batch, ticks = logits.shape[:2]
    if tuple(target.shape) != (batch, *logits.shape[2:-1]):
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}: "
            f"expected {(batch, *logits.shape[2:-1])} (logits are [B, T, *S, C], target [B, *S])"
        )
    expanded = target.unsqueeze(1).expand(batch, ticks, *target.shape[1:])
    losses = F.cross_entropy(logits.flatten(0, -2), expanded.flatten(), reduction="none")
    if per_position:
        return losses.view(batch, ticks, *target.shape[1:])
    return losses.view(batch, ticks, -1).mean(dim=2)


def certainty_loss(logits: Tensor, certainty: Tensor, target: Tensor) -> Tensor:
    """``(CE at the lowest-loss tick + CE at the most-certain tick) / 2``, averaged.

    ``certainty`` [B, T] picks one pair of ticks per example (the paper's loss); ``certainty``
    [B, T, *S] (see :func:`position_certainty`) picks one pair of ticks per position.
    """
    per_position = certainty.dim() > 2
    losses = per_tick_cross_entropy(logits, target, per_position=per_position)
    if tuple(certainty.shape) != tuple(losses.shape):
        raise ValueError(
            f"certainty shape {tuple(certainty.shape)} does not match the per-tick losses "
            f"{tuple(losses.shape)}: pass [B, T] (one tick per example) or [B, T, *S] (one per position)"
        )
    lowest = losses.min(dim=1).values
    most_certain = losses.gather(1, certainty.argmax(dim=1, keepdim=True)).squeeze(1)
    return (lowest.mean() + most_certain.mean()) / 2


def select_ticks(logits: Tensor, ticks: Tensor) -> Tensor:
    """``logits`` [B, T, *S, C] at one tick per example (``ticks`` long [B]) -> [B, *S, C],
    or at one tick per position (``ticks`` long [B, *S])."""
    if ticks.dim() == 1:
        return logits[torch.arange(logits.shape[0], device=logits.device), ticks]
    index = ticks.unsqueeze(1).unsqueeze(-1).expand(-1, 1, *ticks.shape[1:], logits.shape[-1])
    return logits.gather(1, index).squeeze(1)
