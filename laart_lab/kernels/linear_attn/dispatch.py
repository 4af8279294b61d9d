"""One entry point over the linear-attention implementations: argument checks, then dispatch."""

from __future__ import annotations

import torch
from torch import Tensor
from typing_extensions import Unpack

from laart_lab.kernels.contracts import check_qkv
from laart_lab.kernels.linear_attn.chunk import chunk_linear_attention
from laart_lab.kernels.linear_attn.naive import naive_linear_attention
from laart_lab.kernels.linear_attn.utils import (
    DEFAULT_CHUNK_SIZE,
    TRITON_DTYPES,
    LinearAttentionOptions,
    LinearImpl,
    check_chunk_size,
    check_impl,
    resolve_options,
    triton_available,
    triton_interpreting,
)


def resolve_linear_impl(impl: str, device: torch.device, dtype: torch.dtype = torch.float32) -> LinearImpl:
    """Map ``auto`` to ``triton`` on CUDA (Triton installed, fp32/fp16/bf16) else ``chunked``; validate the rest."""
    impl = check_impl(impl)
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


def linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    impl: LinearImpl = "auto",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    **options: Unpack[LinearAttentionOptions],
) -> Tensor:
    """Linear attention in the ``[batch, seq, heads, dim]`` layout (contract: ``components.attention``).

    ``impl`` picks the implementation (:func:`resolve_linear_impl`); the options are those of every
    implementation (:class:`~laart_lab.kernels.linear_attn.utils.LinearAttentionOptions`).
    """
    resolve_options(options)  # a bad option fails here, before any tensor check
    check_qkv(q, k, v, options.get("key_padding_mask"))
    resolved = resolve_linear_impl(impl, q.device, q.dtype)
    check_chunk_size(chunk_size, resolved)
    if resolved == "reference":
        return naive_linear_attention(q, k, v, **options)
    if resolved == "triton":
        # imported on first use: importing triton is slow, and TRITON_INTERPRET must be set before
        from laart_lab.kernels.linear_attn.triton import triton_linear_attention

        return triton_linear_attention(q, k, v, chunk_size=chunk_size, **options)
    return chunk_linear_attention(q, k, v, chunk_size=chunk_size, **options)
