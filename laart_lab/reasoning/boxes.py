"""Gumbel boxes (Dasgupta et al., 2020, "Improving Local Identifiability in Probabilistic Box Embeddings").

A box is the product of intervals ``[min, max]`` in ``d`` dimensions. In a *Gumbel* box each corner is a
Gumbel random variable with location ``min`` (max-Gumbel) or ``max`` (min-Gumbel) and scale ``beta``;
this keeps gradients alive where hard boxes are disjoint or nested (a hard box's volume is flat there).
The closed forms used here:

* intersection corners: ``beta * logsumexp(min_a / beta, min_b / beta)`` (a smooth max of the lower
  corners) and ``-beta * logsumexp(-max_a / beta, -max_b / beta)`` (a smooth min of the upper ones);
* expected side length: ``beta * softplus((max - min) / beta - 2 * gamma)``, i.e. a softplus of the side
  shifted by ``-2 * gamma * beta`` (``gamma`` is the Euler-Mascheroni constant);
* log-volume: the sum of the log side lengths;
* ``P(A | B) = Vol(A ∩ B) / Vol(B)``.

As ``beta -> 0`` all of these tend to the hard-box quantities (max/min corners, ``relu`` sides).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

EULER_GAMMA = 0.5772156649015329
_TINY = 1e-30


@dataclass
class Box:
    """A batch of boxes: ``min`` and ``max`` corners of shape ``[..., d]``."""

    min: Tensor
    max: Tensor

    def __post_init__(self) -> None:
        if self.min.shape != self.max.shape:
            raise ValueError(
                f"Box corners must have the same shape, got {tuple(self.min.shape)} and {tuple(self.max.shape)}"
            )

    def __getitem__(self, index) -> Box:
        return Box(self.min[index], self.max[index])

    def unsqueeze(self, dim: int) -> Box:
        """Insert a batch dimension at tensor position ``dim`` (use a negative ``dim`` < -1 to stay before the
        box dimension, e.g. ``-2`` for ``[..., 1, d]``)."""
        return Box(self.min.unsqueeze(dim), self.max.unsqueeze(dim))

    @property
    def dim(self) -> int:
        return int(self.min.shape[-1])


def _check_beta(beta: float) -> None:
    if beta <= 0:
        raise ValueError(f"beta (the Gumbel scale) must be > 0, got {beta}")


def intersection(a: Box, b: Box, beta: float) -> Box:
    """Gumbel intersection: corners by beta-scaled logsumexp (a smooth max of mins, smooth min of maxes)."""
    _check_beta(beta)
    lo = beta * torch.logaddexp(a.min / beta, b.min / beta)
    hi = -beta * torch.logaddexp(-a.max / beta, -b.max / beta)
    return Box(lo, hi)


def side_lengths(box: Box, beta: float) -> Tensor:
    """Expected side lengths ``beta * softplus((max - min) / beta - 2 * gamma)``: positive even for empty boxes."""
    _check_beta(beta)
    return beta * F.softplus((box.max - box.min) / beta - 2.0 * EULER_GAMMA)


def log_volume(box: Box, beta: float) -> Tensor:
    """Log of the expected volume: sum over dimensions of the log expected side length."""
    return torch.log(side_lengths(box, beta).clamp_min(_TINY)).sum(-1)


def log_conditional(a: Box, b: Box, beta: float) -> Tensor:
    """``log P(A | B) = log Vol(A ∩ B) - log Vol(B)``: how much of B lies inside A."""
    return log_volume(intersection(a, b, beta), beta) - log_volume(b, beta)


def conditional(a: Box, b: Box, beta: float) -> Tensor:
    """``P(A | B) = Vol(A ∩ B) / Vol(B)``, in [0, 1] up to the Gumbel approximation."""
    return log_conditional(a, b, beta).exp()


def hard_log_volume(box: Box) -> Tensor:
    """Log-volume of a hard box (``-inf`` when empty): the ``beta -> 0`` limit, for tests and inspection."""
    return torch.log((box.max - box.min).clamp_min(0.0)).sum(-1)


def hard_intersection(a: Box, b: Box) -> Box:
    """Intersection of hard boxes (possibly empty: ``min > max`` in some dimension)."""
    return Box(torch.maximum(a.min, b.min), torch.minimum(a.max, b.max))
