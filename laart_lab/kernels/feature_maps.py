"""Positive feature maps φ for linear attention, and their derivatives (for hand-written backwards).

``elu+1`` (Katharopoulos et al., 2020) is strictly positive, so the normaliser ``φ(q)·Σφ(k)`` never
vanishes; ``relu`` is sparser but can give a zero normaliser, which ``eps`` then guards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

FEATURE_MAPS: tuple[str, ...] = ("elu+1", "relu")


def check_feature_map(name: str) -> str:
    """Return ``name`` if it is a known feature map, else raise a ``ValueError`` listing the choices."""
    if name not in FEATURE_MAPS:
        raise ValueError(f"unknown linear-attention feature_map {name!r}; choose one of {list(FEATURE_MAPS)}")
    return name


def feature_map(x: Tensor, name: str) -> Tensor:
    """φ(x) elementwise, in ``x``'s dtype (callers upcast first when they want fp32)."""
    if name == "elu+1":
        return F.elu(x) + 1.0
    if name == "relu":
        return F.relu(x)
    raise ValueError(check_feature_map(name))


def feature_map_grad(x: Tensor, name: str) -> Tensor:
    """dφ/dx elementwise: ``elu+1`` -> 1 for x > 0 else exp(x); ``relu`` -> 1 for x > 0 else 0."""
    if name == "elu+1":
        return torch.where(x > 0, torch.ones_like(x), torch.exp(torch.clamp(x, max=0.0)))
    if name == "relu":
        return (x > 0).to(x.dtype)
    raise ValueError(check_feature_map(name))
