"""The linear-attention family: one semantics, one signature, each implementation tested against ``naive``.

Linear attention ``o_i = φ(q_i)ᵀ S_i / (φ(q_i)ᵀ z_i + eps)`` with ``S_i = Σ_j φ(k_j) v_jᵀ`` and
``z_i = Σ_j φ(k_j)`` (``j <= i`` when causal), in the ``[batch, seq, heads, dim]`` layout. Every
implementation is called ``f(q, k, v, **options)`` with the keyword-only options of
:class:`~.utils.LinearAttentionOptions` (plus its own tuning keywords, such as ``chunk_size``):

* :mod:`.naive` -- :func:`naive_linear_attention`, the quadratic form: the ground truth for tests;
* :mod:`.chunk` -- :func:`chunk_linear_attention`, chunked PyTorch (CPU default), O(T) memory,
  hand-written backward;
* :mod:`.triton` -- ``triton_linear_attention``, the same chunked algorithm as Triton kernels (CUDA
  default); not imported here, since importing Triton is slow and ``TRITON_INTERPRET`` must be set first;
* :mod:`.fused_recurrent` -- :class:`LinearRecurrentState`, the O(1)-per-token form for generation;
* :mod:`.utils` -- what they share: the option ``Literal`` types, their checks, φ, dtypes, alignment;
* :mod:`.dispatch` -- :func:`linear_attention`, which picks an implementation (``impl=``).
"""

from laart_lab.kernels.linear_attn.chunk import chunk_linear_attention
from laart_lab.kernels.linear_attn.dispatch import linear_attention, resolve_linear_impl
from laart_lab.kernels.linear_attn.fused_recurrent import LinearRecurrentState
from laart_lab.kernels.linear_attn.naive import linear_scores, naive_linear_attention
from laart_lab.kernels.linear_attn.utils import (
    FEATURE_MAPS,
    LINEAR_IMPLS,
    FeatureMap,
    LinearAttentionOptions,
    LinearImpl,
    feature_map,
    feature_map_grad,
)

__all__ = [
    "FEATURE_MAPS",
    "LINEAR_IMPLS",
    "FeatureMap",
    "LinearAttentionOptions",
    "LinearImpl",
    "LinearRecurrentState",
    "chunk_linear_attention",
    "feature_map",
    "feature_map_grad",
    "linear_attention",
    "linear_scores",
    "naive_linear_attention",
    "resolve_linear_impl",
]
