"""Reading a ``[B, T, ...]`` token sequence at positions: states at token positions, and signed distances
between positions as buckets. Shared by the reader's pair head and its kinship-word head."""

from __future__ import annotations

import torch
from torch import Tensor


def states_at(h: Tensor, positions: Tensor) -> Tensor:
    """``h[b, positions[b, ...]]``: ``[B, T, D]`` states gathered at ``[B, ...]`` token positions."""
    b, _, d = h.shape
    flat = positions.reshape(b, -1)
    return h.gather(1, flat.unsqueeze(-1).expand(-1, -1, d)).view(*positions.shape, d)


def distance_bucket(distance: Tensor, buckets: int) -> Tensor:
    """Signed token distance -> bucket id in ``0 .. 2*buckets``: exact near 0, logarithmic further out."""
    magnitude = distance.abs().clamp_min(1).float()
    exact = buckets // 2
    log_bucket = exact + (torch.log(magnitude / exact) / torch.log(torch.tensor(64.0 / exact)) * (buckets - exact))
    bucket = torch.where(magnitude < exact, magnitude, log_bucket).long().clamp(max=buckets - 1)
    bucket = torch.where(distance == 0, torch.zeros_like(bucket), bucket)
    return torch.where(distance < 0, buckets + bucket, bucket)
