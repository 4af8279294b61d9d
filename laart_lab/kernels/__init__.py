"""Numerical kernels behind the attention backends: plain functions on tensors, no ``nn.Module``.

Kernels import nothing from ``laart_lab.components`` or above; the contracts they share with the
backends (the layout check, the decoding-state base class) live in :mod:`.contracts`.

* :mod:`.linear_attn` -- the linear-attention family (naive, chunked, Triton, recurrent).
"""

from laart_lab.kernels.contracts import DecodingState, check_qkv
from laart_lab.kernels.linear_attn import (
    FEATURE_MAPS,
    LINEAR_IMPLS,
    FeatureMap,
    LinearAttentionOptions,
    LinearImpl,
    LinearRecurrentState,
    chunk_linear_attention,
    feature_map,
    feature_map_grad,
    linear_attention,
    naive_linear_attention,
    resolve_linear_impl,
)

__all__ = [
    "FEATURE_MAPS",
    "LINEAR_IMPLS",
    "DecodingState",
    "FeatureMap",
    "LinearAttentionOptions",
    "LinearImpl",
    "LinearRecurrentState",
    "check_qkv",
    "chunk_linear_attention",
    "feature_map",
    "feature_map_grad",
    "linear_attention",
    "naive_linear_attention",
    "resolve_linear_impl",
]
