"""Numerical kernels behind the attention backends (plain functions on tensors, no nn.Modules).

Linear attention ``o_i = φ(q_i)ᵀ S_i / (φ(q_i)ᵀ z_i + eps)`` with ``S_i = Σ_j φ(k_j) v_jᵀ`` and
``z_i = Σ_j φ(k_j)`` (``j <= i`` when causal) comes in four implementations with one layout
(``[batch, seq, heads, dim]``) and one set of semantics:

* :mod:`.linear_reference` -- naive quadratic form, the ground truth for tests;
* :mod:`.linear_chunked` -- chunked PyTorch (CPU default), O(T) memory, hand-written backward;
* :mod:`.linear_triton` -- the same chunked algorithm as Triton kernels (CUDA default);
* :mod:`.linear_recurrent` -- the O(1)-per-token recurrent state used for generation.

:func:`linear_attention` picks an implementation and handles the parts every implementation shares
(argument checks, causal alignment when ``q_len != kv_len``).
"""

from laart_lab.kernels.feature_maps import FEATURE_MAPS, feature_map, feature_map_grad
from laart_lab.kernels.linear_dispatch import LINEAR_IMPLS, linear_attention, resolve_linear_impl
from laart_lab.kernels.linear_recurrent import LinearRecurrentState

__all__ = [
    "FEATURE_MAPS",
    "LINEAR_IMPLS",
    "LinearRecurrentState",
    "feature_map",
    "feature_map_grad",
    "linear_attention",
    "resolve_linear_impl",
]
