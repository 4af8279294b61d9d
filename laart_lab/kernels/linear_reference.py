"""Naive quadratic linear attention: the ground truth every fast implementation is tested against.

Builds the full ``[batch, heads, q_len, kv_len]`` score matrix, so it is O(T²) in time and memory and
meant for tests and for :meth:`LinearAttention.attention_weights` on short snippets only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from laart_lab.kernels.feature_maps import feature_map


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """States are accumulated in fp32 whatever the input dtype (fp64 stays fp64, for gradcheck)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def linear_scores(q: Tensor, k: Tensor, causal: bool, key_padding_mask: Tensor | None, feature: str) -> Tensor:
    """Unnormalised scores ``φ(q_i)·φ(k_j)`` ``[batch, heads, q_len, kv_len]`` with masks applied (zeros)."""
    acc = accumulation_dtype(q.dtype)
    qf = feature_map(q.to(acc), feature)
    kf = feature_map(k.to(acc), feature)
    scores = torch.einsum("bqhd,bkhd->bhqk", qf, kf)
    tq, tk = q.shape[1], k.shape[1]
    if causal:
        allowed = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(tk - tq)
        scores = scores * allowed
    if key_padding_mask is not None:
        scores = scores * key_padding_mask[:, None, None, :]
    return scores


def linear_attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    feature: str = "elu+1",
    eps: float = 1e-6,
) -> Tensor:
    """``o_i = Σ_j s_ij v_j / (Σ_j s_ij + eps)`` with ``s_ij = φ(q_i)·φ(k_j)`` over the allowed keys."""
    scores = linear_scores(q, k, causal, key_padding_mask, feature)
    num = torch.einsum("bhqk,bkhe->bqhe", scores, v.to(scores.dtype))
    den = scores.sum(-1).transpose(1, 2)  # [batch, q_len, heads]
    return (num / (den + eps)[..., None]).to(q.dtype)
