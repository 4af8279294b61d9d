"""One entry point over the linear-attention implementations: checks, causal alignment, dispatch."""

from __future__ import annotations

import os
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from laart_lab.components.attention import check_qkv
from laart_lab.kernels.feature_maps import check_feature_map
from laart_lab.kernels.linear_chunked import DEFAULT_CHUNK_SIZE, linear_attention_chunked
from laart_lab.kernels.linear_reference import linear_attention_reference

LinearImpl = Literal["auto", "chunked", "triton", "reference"]
LINEAR_IMPLS: tuple[str, ...] = ("auto", "chunked", "triton", "reference")


def triton_interpreting() -> bool:
    """True when ``TRITON_INTERPRET=1``: Triton kernels then run (slowly) on CPU tensors, for tests."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def resolve_linear_impl(impl: str, device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """Map ``auto`` to ``triton`` on CUDA (Triton installed, fp32/fp16/bf16) else ``chunked``; validate the rest."""
    if impl not in LINEAR_IMPLS:
        raise ValueError(f"unknown linear-attention impl {impl!r}; choose one of {list(LINEAR_IMPLS)}")
    if impl == "auto":
        use_triton = device.type == "cuda" and dtype in TRITON_DTYPES and triton_available()
        return "triton" if use_triton else "chunked"
    if impl == "triton":
        if device.type != "cuda" and not triton_interpreting():
            raise ValueError(
                f"impl='triton' runs on CUDA tensors, got device {device.type!r}; use impl='chunked' "
                "(or set TRITON_INTERPRET=1 to run the kernels in Triton's CPU interpreter, for testing)"
            )
        if not triton_available():
            raise ValueError(
                "impl='triton' needs the 'triton' package (`pip install -e .[gpu]`, README: GPU install); "
                "or use impl='chunked'"
            )
    return impl


def _align_causal(
    q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, int]:
    """Left-pad so that ``q_len == kv_len`` while keeping "query i sees keys j <= i + kv_len - q_len".

    Padded queries produce rows that are dropped afterwards (so they get no gradient); padded keys are
    masked out. Returns the padded tensors and how many leading output rows to drop.
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


def linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    feature: str = "elu+1",
    impl: str = "auto",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    eps: float = 1e-6,
) -> Tensor:
    """Linear attention in the ``[batch, seq, heads, dim]`` layout (contract: ``components.attention``)."""
    check_qkv(q, k, v, key_padding_mask)
    check_feature_map(feature)
    impl = resolve_linear_impl(impl, q.device, q.dtype)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of tokens, got {chunk_size}")
    if impl == "reference":
        return linear_attention_reference(q, k, v, causal, key_padding_mask, feature, eps)
    drop = 0
    if causal and q.shape[1] != k.shape[1]:
        q, k, v, key_padding_mask, drop = _align_causal(q, k, v, key_padding_mask)
    if impl == "triton":
        from laart_lab.kernels.linear_triton import linear_attention_triton

        out = linear_attention_triton(q, k, v, causal, key_padding_mask, feature, eps, chunk_size)
    else:
        out = linear_attention_chunked(q, k, v, causal, key_padding_mask, feature, eps, chunk_size)
    return out[:, drop:] if drop else out
