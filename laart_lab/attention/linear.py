"""Linear attention backend: φ(Q)(φ(K)ᵀV), O(T) time and memory, O(1) per generated token.

It gives up softmax's winner-take-all sharpness (weights are ratios of positive feature dot
products) in exchange for no ``T x T`` matrix; the kernels live in :mod:`laart_lab.kernels`.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from laart_lab.components.attention import AttentionBackend, DecodingState
from laart_lab.kernels import LINEAR_IMPLS, LinearRecurrentState, linear_attention
from laart_lab.kernels.feature_maps import check_feature_map
from laart_lab.kernels.linear_reference import linear_scores

FeatureMapName = Literal["elu+1", "relu"]
LinearImplName = Literal["auto", "chunked", "triton", "reference"]


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
        feature_map: FeatureMapName = "elu+1",
        impl: LinearImplName = "auto",
        chunk_size: int = 64,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        check_feature_map(feature_map)
        if impl not in LINEAR_IMPLS:
            raise ValueError(f"linear attention: unknown impl {impl!r}; choose one of {list(LINEAR_IMPLS)}")
        if chunk_size < 1:
            raise ValueError(f"linear attention: chunk_size must be >= 1, got {chunk_size}")
        if impl == "triton" and (chunk_size < 16 or chunk_size & (chunk_size - 1)):
            raise ValueError(f"linear attention impl='triton' needs chunk_size a power of two >= 16, got {chunk_size}")
        if eps < 0:
            raise ValueError(f"linear attention: eps must be >= 0, got {eps}")
        self.feature_map = feature_map
        self.impl = impl
        self.chunk_size = chunk_size
        self.eps = eps

    def extra_repr(self) -> str:
        return f"feature_map={self.feature_map!r}, impl={self.impl!r}, chunk_size={self.chunk_size}, eps={self.eps}"

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, causal: bool = False, key_padding_mask: Tensor | None = None
    ) -> Tensor:
        return linear_attention(
            q, k, v, causal, key_padding_mask, self.feature_map, self.impl, self.chunk_size, self.eps
        )

    def decoding_state(self) -> DecodingState:
        """O(1)-per-token recurrent state (``S = Σφ(k)vᵀ``, ``z = Σφ(k)``) instead of a key cache."""
        return LinearRecurrentState(self.feature_map, self.eps)

    def attention_weights(self, q: Tensor, k: Tensor, causal: bool = False) -> Tensor:
        """Implied weights ``φ(q_i)·φ(k_j) / (Σ_j φ(q_i)·φ(k_j) + eps)`` ``[batch, heads, q_len, kv_len]``."""
        scores = linear_scores(q, k, causal, None, self.feature_map)
        return scores / (scores.sum(-1, keepdim=True) + self.eps)
