"""Naive quadratic linear attention: the ground truth every other implementation is tested against.

Builds the full ``[batch, heads, q_len, kv_len]`` score matrix, so it is O(T²) in time and memory and
meant for tests and for ``LinearAttention.attention_weights`` on short snippets only.
"""

from __future__ import annotations

import torch
from torch import Tensor
from typing_extensions import Unpack

from laart_lab.kernels.linear_attn.utils import LinearAttentionOptions, accumulation_dtype, feature_map, resolve_options


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


def naive_linear_attention(q: Tensor, k: Tensor, v: Tensor, **options: Unpack[LinearAttentionOptions]) -> Tensor:
    """``o_i = Σ_j s_ij v_j / (Σ_j s_ij + eps)`` with ``s_ij = φ(q_i)·φ(k_j)`` over the allowed keys.

    Any ``q_len``/``kv_len``, causal or not (no alignment needed: the mask encodes the contract).
    """
    causal, key_padding_mask, feature, eps = resolve_options(options)
    scores = linear_scores(q, k, causal, key_padding_mask, feature)
    num = torch.einsum("bhqk,bkhe->bqhe", scores, v.to(scores.dtype))
    den = scores.sum(-1).transpose(1, 2)  # [batch, q_len, heads]
    return (num / (den + eps)[..., None]).to(q.dtype)
