"""Linear attention backend: φ(Q)(φ(K)ᵀV), O(T) time and memory, O(1) per generated token.

It gives up softmax's winner-take-all sharpness (weights are ratios of positive feature dot
products) in exchange for no ``T x T`` matrix; the kernels live in :mod:`laart_lab.kernels.linear_attn`,
which also declares the options (``FeatureMap``, ``LinearImpl``) and their checks.
"""

from __future__ import annotations

from torch import Tensor

from laart_lab.components.attention import AttentionBackend, DecodingState
from laart_lab.kernels.linear_attn import FeatureMap, LinearImpl, LinearRecurrentState, linear_attention, linear_scores
from laart_lab.kernels.linear_attn.utils import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_OPTIONS,
    check_chunk_size,
    check_eps,
    check_feature_map,
    check_impl,
)


class LinearAttention(AttentionBackend):
    """Causal / non-causal linear attention with normaliser ``φ(q)·Σφ(k) + eps``.

    Args:
        feature_map: φ applied to queries and keys: ``elu+1`` (always positive) or ``relu``.
        impl: ``auto`` = Triton kernels on CUDA, chunked PyTorch elsewhere; ``chunked``; ``triton``
            (CUDA only); ``reference`` (naive quadratic, for tests and tiny inputs).
        chunk_size: tokens per chunk of the chunked algorithms (a power of two >= 16 for Triton).
        eps: added to the normaliser, so queries whose features miss every key return ~0.
    """

    def __init__(
        self,
        feature_map: FeatureMap = DEFAULT_OPTIONS["feature_map"],
        impl: LinearImpl = "auto",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        eps: float = DEFAULT_OPTIONS["eps"],
    ) -> None:
        super().__init__()
        # the kernels' own checks, run once here so that a bad recipe fails at construction
        self.feature_map = check_feature_map(feature_map)
        self.impl = check_impl(impl)
        self.chunk_size = check_chunk_size(chunk_size, impl)
        self.eps = check_eps(eps)

    def extra_repr(self) -> str:
        return f"feature_map={self.feature_map!r}, impl={self.impl!r}, chunk_size={self.chunk_size}, eps={self.eps}"

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, causal: bool = False, key_padding_mask: Tensor | None = None
    ) -> Tensor:
        return linear_attention(
            q,
            k,
            v,
            causal=causal,
            key_padding_mask=key_padding_mask,
            feature_map=self.feature_map,
            eps=self.eps,
            impl=self.impl,
            chunk_size=self.chunk_size,
        )

    def decoding_state(self) -> DecodingState:
        """O(1)-per-token recurrent state (``S = Σφ(k)vᵀ``, ``z = Σφ(k)``) instead of a key cache."""
        return LinearRecurrentState(feature_map=self.feature_map, eps=self.eps)

    def attention_weights(self, q: Tensor, k: Tensor, causal: bool = False) -> Tensor:
        """Implied weights ``φ(q_i)·φ(k_j) / (Σ_j φ(q_i)·φ(k_j) + eps)`` ``[batch, heads, q_len, kv_len]``."""
        scores = linear_scores(q, k, causal, None, self.feature_map)
        return scores / (scores.sum(-1, keepdim=True) + self.eps)
