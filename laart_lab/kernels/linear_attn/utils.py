"""What every linear-attention implementation shares: the options, their checks, φ, dtypes, alignment.

The options are declared once, here:

* :data:`FeatureMap` and :data:`LinearImpl` are the ``Literal`` types the recipes validate against
  (``LinearAttention``'s constructor is annotated with them); :data:`FEATURE_MAPS` and
  :data:`LINEAR_IMPLS` are read off them, never written out again;
* :class:`LinearAttentionOptions` is the keyword-only signature after ``q, k, v`` that every
  implementation takes (``naive``, ``chunk``, ``triton`` and the dispatcher ``linear_attention``);
  :data:`DEFAULT_OPTIONS` holds its defaults and :func:`resolve_options` applies and checks them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal, TypedDict, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

FeatureMap = Literal["elu+1", "relu"]
"""φ applied to queries and keys: ``elu+1`` (Katharopoulos et al., 2020) is strictly positive, so the
normaliser ``φ(q)·Σφ(k)`` never vanishes; ``relu`` is sparser but can give a zero normaliser, which
``eps`` then guards."""
FEATURE_MAPS: tuple[FeatureMap, ...] = get_args(FeatureMap)

LinearImpl = Literal["auto", "chunked", "triton", "reference"]
"""``auto``: Triton on CUDA, chunked PyTorch elsewhere; ``chunked``; ``triton`` (CUDA, or the CPU
interpreter under ``TRITON_INTERPRET=1``); ``reference`` (naive quadratic, for tests and tiny inputs)."""
LINEAR_IMPLS: tuple[LinearImpl, ...] = get_args(LinearImpl)

DEFAULT_CHUNK_SIZE = 64
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class LinearAttentionOptions(TypedDict, total=False):
    """The keyword-only options every implementation takes after ``q, k, v`` (defaults: :data:`DEFAULT_OPTIONS`).

    * ``causal``: query ``i`` sees keys ``j <= i + kv_len - q_len`` (the contract of
      :mod:`laart_lab.components.attention`);
    * ``key_padding_mask``: bool ``[batch, kv_len]``, ``False`` marks a padding key;
    * ``feature_map``: φ, one of :data:`FEATURE_MAPS`;
    * ``eps``: added to the normaliser, so a query whose features miss every key returns ~0.
    """

    causal: bool
    key_padding_mask: Tensor | None
    feature_map: FeatureMap
    eps: float


DEFAULT_OPTIONS: LinearAttentionOptions = {
    "causal": False,
    "key_padding_mask": None,
    "feature_map": "elu+1",
    "eps": 1e-6,
}


def resolve_options(options: LinearAttentionOptions) -> tuple[bool, Tensor | None, FeatureMap, float]:
    """``(causal, key_padding_mask, feature_map, eps)`` with defaults filled in; a clear error for a bad one."""
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise TypeError(f"linear attention: unknown option(s) {unknown}; accepted: {list(DEFAULT_OPTIONS)}")
    full: LinearAttentionOptions = {**DEFAULT_OPTIONS, **options}
    return full["causal"], full["key_padding_mask"], check_feature_map(full["feature_map"]), check_eps(full["eps"])


def check_feature_map(name: str) -> FeatureMap:
    """``name`` if it is one of :data:`FEATURE_MAPS`, else a ``ValueError`` listing them."""
    for known in FEATURE_MAPS:
        if name == known:
            return known
    raise ValueError(f"linear attention: unknown feature_map {name!r}; choose one of {list(FEATURE_MAPS)}")


def check_impl(impl: str) -> LinearImpl:
    """``impl`` if it is one of :data:`LINEAR_IMPLS`, else a ``ValueError`` listing them."""
    for known in LINEAR_IMPLS:
        if impl == known:
            return known
    raise ValueError(f"linear attention: unknown impl {impl!r}; choose one of {list(LINEAR_IMPLS)}")


def check_eps(eps: float) -> float:
    if eps < 0:
        raise ValueError(f"linear attention: eps must be >= 0, got {eps}")
    return eps


def check_chunk_size(chunk_size: int, impl: str) -> int:
    """Any positive chunk for the PyTorch code; Triton tiles need a power of two >= 16 (``tl.dot`` shapes)."""
    if chunk_size < 1:
        raise ValueError(f"linear attention: chunk_size must be a positive number of tokens, got {chunk_size}")
    if impl == "triton" and (chunk_size < 16 or chunk_size & (chunk_size - 1)):
        raise ValueError(f"linear attention impl='triton' needs chunk_size a power of two >= 16, got {chunk_size}")
    return chunk_size


def _elu_plus_one_grad(x: Tensor) -> Tensor:
    return torch.where(x > 0, torch.ones_like(x), torch.exp(torch.clamp(x, max=0.0)))


# φ and dφ/dx per feature map (the derivatives serve the hand-written backwards). Keyed by every
# FeatureMap value: the kernel tests run each implementation for each of FEATURE_MAPS.
_FEATURE_FUNCTIONS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "elu+1": (lambda x: F.elu(x) + 1.0, _elu_plus_one_grad),
    "relu": (F.relu, lambda x: (x > 0).to(x.dtype)),
}


def feature_map(x: Tensor, name: str) -> Tensor:
    """φ(x) elementwise, in ``x``'s dtype (callers upcast first when they want fp32)."""
    return _FEATURE_FUNCTIONS[check_feature_map(name)][0](x)


def feature_map_grad(x: Tensor, name: str) -> Tensor:
    """dφ/dx elementwise: ``elu+1`` -> 1 for x > 0 else exp(x); ``relu`` -> 1 for x > 0 else 0."""
    return _FEATURE_FUNCTIONS[check_feature_map(name)][1](x)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """States are accumulated in fp32 whatever the input dtype (fp64 stays fp64, for gradcheck)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def align_causal(
    q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, int]:
    """Left-pad so that ``q_len == kv_len`` while keeping "query i sees keys j <= i + kv_len - q_len".

    The chunked algorithms need equal lengths when causal. Padded queries produce rows that are
    dropped afterwards (so they get no gradient); padded keys are masked out. Returns the padded
    tensors and how many leading output rows to drop.
    """
    tq, tk = q.shape[1], k.shape[1]
    length = max(tq, tk)
    if tq < length:
        q = F.pad(q, (0, 0, 0, 0, length - tq, 0))
    if tk < length:
        pad = length - tk
        k = F.pad(k, (0, 0, 0, 0, pad, 0))
        v = F.pad(v, (0, 0, 0, 0, pad, 0))
        if key_padding_mask is None:
            key_padding_mask = torch.ones(k.shape[0], tk, dtype=torch.bool, device=k.device)
        key_padding_mask = F.pad(key_padding_mask, (pad, 0), value=False)
    return q, k, v, key_padding_mask, length - tq


def triton_interpreting() -> bool:
    """True when ``TRITON_INTERPRET=1``: Triton kernels then run (slowly) on CPU tensors, for tests."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True
