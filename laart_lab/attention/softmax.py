"""Exact softmax attention: xformers' memory-efficient kernel on CUDA fp16/bf16, PyTorch SDPA elsewhere.

xformers is imported lazily, only once a CUDA tensor asks for it: importing it on a CPU-only machine
prints a warning about missing CUDA extensions.

Masks and the causal contract (queries aligned with the *end* of the keys):

* causal, ``q_len == kv_len``: xformers ``LowerTriangularMask`` / SDPA ``is_causal=True`` (no mask
  tensor; both are O(T) memory kernels);
* causal, ``q_len != kv_len``: xformers ``LowerTriangularFromBottomRightMask`` / SDPA
  ``causal_lower_right`` -- the bottom-right alignment is exactly our contract;
* with a ``key_padding_mask``: a dense ``[batch, 1|heads, q_len, kv_len]`` mask/bias is built (so that
  call is O(q_len·kv_len) memory). Queries left with no allowed key return zeros, on every path.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from laart_lab.components.attention import AttentionBackend, check_qkv

SoftmaxImpl = Literal["auto", "xformers", "sdpa"]
SOFTMAX_IMPLS: tuple[str, ...] = ("auto", "xformers", "sdpa")
XFORMERS_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_AUTO_XFORMERS_DTYPES = (torch.float16, torch.bfloat16)  # where xformers beats SDPA's own kernels


def _xformers_build_problem() -> str | None:
    """Why the installed xformers cannot run its CUDA kernels, or None when it can."""
    try:
        import xformers
        import xformers.ops  # noqa: F401
    except ImportError as err:
        return f"xformers is not installed ({err}); `pip install xformers` matching your torch/CUDA"
    if not getattr(xformers, "_has_cpp_library", False):
        return (
            f"the installed xformers {getattr(xformers, '__version__', '?')} has no compiled C++/CUDA "
            "extensions for this torch/CUDA/Python (it was built for another version); reinstall it"
        )
    return None


def xformers_unavailable_reason(q: Tensor) -> str | None:
    """Why ``xformers.ops.memory_efficient_attention`` cannot run on ``q`` (device, dtype, build), or None.

    Device and dtype are checked first, without importing xformers (whose import warns on CPU).
    """
    problems = []
    if q.device.type != "cuda":
        problems.append(f"it needs CUDA tensors, got device {q.device.type!r}")
    if q.dtype not in XFORMERS_DTYPES:
        problems.append(f"it takes float16/bfloat16/float32 tensors, got {q.dtype}")
    if problems:
        return "xformers' memory_efficient_attention cannot run here: " + "; ".join(problems)
    return _xformers_build_problem()


def _dense_allowed(tq: int, tk: int, causal: bool, key_padding_mask: Tensor | None, device: torch.device) -> Tensor:
    """Bool ``[batch|1, 1, tq, tk]``: True where query i may attend key j (contract alignment)."""
    allowed = torch.ones(1, 1, tq, tk, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed.tril(tk - tq)
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask[:, None, None, :]
    return allowed


class SoftmaxAttention(AttentionBackend):
    """Exact ``softmax(q kᵀ / sqrt(d)) v``.

    Args:
        impl: ``auto`` picks xformers for CUDA fp16/bf16 tensors when a working xformers is installed,
            else SDPA; ``xformers`` insists (a ``ValueError`` says why it cannot run); ``sdpa`` always
            uses ``torch.nn.functional.scaled_dot_product_attention``.
    """

    def __init__(self, impl: SoftmaxImpl = "auto") -> None:
        super().__init__()
        if impl not in SOFTMAX_IMPLS:
            raise ValueError(f"softmax attention: unknown impl {impl!r}; choose one of {list(SOFTMAX_IMPLS)}")
        self.impl = impl

    def extra_repr(self) -> str:
        return f"impl={self.impl!r}"

    def resolve_impl(self, q: Tensor) -> str:
        """The implementation this call will use (``xformers`` or ``sdpa``) for tensors like ``q``."""
        if self.impl == "sdpa":
            return "sdpa"
        if self.impl == "xformers":
            reason = xformers_unavailable_reason(q)
            if reason is not None:
                raise ValueError(f"softmax attention impl='xformers': {reason}. Use impl='sdpa' or 'auto'.")
            return "xformers"
        if q.device.type == "cuda" and q.dtype in _AUTO_XFORMERS_DTYPES and xformers_unavailable_reason(q) is None:
            return "xformers"
        return "sdpa"

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, causal: bool = False, key_padding_mask: Tensor | None = None
    ) -> Tensor:
        check_qkv(q, k, v, key_padding_mask)
        if self.resolve_impl(q) == "xformers":
            return _xformers_attention(q, k, v, causal, key_padding_mask)
        return _sdpa_attention(q, k, v, causal, key_padding_mask)

    def attention_weights(self, q: Tensor, k: Tensor, causal: bool = False) -> Tensor:
        """``softmax(q kᵀ / sqrt(d))`` ``[batch, heads, q_len, kv_len]`` (fp32), rows with no key are zero."""
        scores = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float()) / math.sqrt(q.shape[-1])
        allowed = _dense_allowed(q.shape[1], k.shape[1], causal, None, q.device)
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        return torch.nan_to_num(weights, nan=0.0)


def _sdpa_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool, key_padding_mask: Tensor | None) -> Tensor:
    tq, tk = q.shape[1], k.shape[1]
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # SDPA wants [B, H, T, D]
    if key_padding_mask is None and (not causal or tq <= tk):
        if not causal:
            out = F.scaled_dot_product_attention(qt, kt, vt)
        elif tq == tk:
            out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True)
        else:
            from torch.nn.attention.bias import causal_lower_right

            out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=causal_lower_right(tq, tk))
        return out.transpose(1, 2)
    allowed = _dense_allowed(tq, tk, causal, key_padding_mask, q.device)
    has_key = allowed.any(-1, keepdim=True)  # [B|1, 1, tq, 1]
    # Unmask empty rows (a softmax over nothing is NaN on some backends) and zero them afterwards.
    out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=allowed | ~has_key)
    return (out * has_key).transpose(1, 2)


def _xformers_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool, key_padding_mask: Tensor | None) -> Tensor:
    from xformers.ops import fmha

    tq, tk = q.shape[1], k.shape[1]
    if key_padding_mask is None:
        if not causal:
            bias = None
        elif tq == tk:
            bias = fmha.attn_bias.LowerTriangularMask()
        else:
            bias = fmha.attn_bias.LowerTriangularFromBottomRightMask()
        out = fmha.memory_efficient_attention(q, k, v, attn_bias=bias)
        if causal and tq > tk:  # the first tq - tk queries have no key at all
            out = out.clone()
            out[:, : tq - tk] = 0
        return out
    allowed = _dense_allowed(tq, tk, causal, key_padding_mask, q.device).expand(q.shape[0], q.shape[2], tq, tk)
    has_key = allowed.any(-1, keepdim=True)
    # xformers wants the bias' last dimension 8-aligned in memory: slice a padded buffer.
    padded = torch.zeros(q.shape[0], q.shape[2], tq, -(-tk // 8) * 8, dtype=q.dtype, device=q.device)
    bias = padded[..., :tk]
    bias.masked_fill_(~(allowed | ~has_key), float("-inf"))
    out = fmha.memory_efficient_attention(q, k, v, attn_bias=bias)
    return out * has_key.permute(0, 2, 1, 3).to(out.dtype)
