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

import functools
import importlib.util
import json
import math
import warnings
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from laart_lab.components.attention import AttentionBackend, check_qkv

SoftmaxImpl = Literal["auto", "xformers", "sdpa"]
SOFTMAX_IMPLS: tuple[str, ...] = ("auto", "xformers", "sdpa")
XFORMERS_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_AUTO_XFORMERS_DTYPES = (torch.float16, torch.bfloat16)  # where xformers beats SDPA's own kernels


XFORMERS_NOT_INSTALLED = "xformers is not installed"


def xformers_build_info() -> dict | None:
    """The build the installed xformers' compiled kernels were made for (its ``cpp_lib.json``: torch, CUDA,
    Python versions), read without importing xformers (whose import warns when they cannot load); None
    when xformers is absent or has no such file."""
    try:
        spec = importlib.util.find_spec("xformers")
    except (ImportError, ValueError, AttributeError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "cpp_lib.json"
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                return None
    return None


def xformers_fix_hint(build: dict | None) -> str:
    """The install that gives the xformers described by ``build`` the torch it was built for."""
    torch_build = str(((build or {}).get("version") or {}).get("torch") or "")
    if not torch_build:
        return "install xformers and torch builds that match (README: GPU install), or use impl='sdpa'"
    base, _, local = torch_build.partition("+")
    command = f"pip install torch=={base}"
    if local.startswith(("cu", "rocm")):
        command += f" --index-url https://download.pytorch.org/whl/{local}"
    return (
        f"install the torch it was built for: `{command}` (README: GPU install), or an xformers release "
        f"built for torch {torch.__version__}; impl='sdpa' avoids xformers"
    )


def _xformers_build_problem() -> str | None:
    """Why the installed xformers cannot run its CUDA kernels (and which install fixes it), or None when it can."""
    try:
        import xformers
        import xformers.ops  # noqa: F401
    except ImportError as err:
        return f"{XFORMERS_NOT_INSTALLED} ({err}); `pip install -e .[gpu]` with a matching torch (README: GPU install)"
    if not getattr(xformers, "_has_cpp_library", False):
        version = getattr(xformers, "__version__", "?")
        build = xformers_build_info()
        this_torch = torch.__version__ + ("" if torch.version.cuda else ", a CPU-only build")
        built_for = ""
        if build is not None:
            info = build.get("version") or {}
            built_for = f" it was built for torch {info.get('torch', '?')} (CUDA {info.get('cuda', '?')}),"
        return (
            f"the installed xformers {version} cannot load its compiled C++/CUDA kernels:{built_for} this is "
            f"torch {this_torch}. Fix: {xformers_fix_hint(build)}"
        )
    return None


@functools.cache
def _xformers_build_problem_cached() -> str | None:
    return _xformers_build_problem()


_warned_fallback = False


def _warn_xformers_fallback(problem: str) -> None:
    """Once per process: impl='auto' wanted xformers, which is installed but broken, and takes SDPA instead."""
    global _warned_fallback
    if _warned_fallback or problem.startswith(XFORMERS_NOT_INSTALLED):
        return
    _warned_fallback = True
    warnings.warn(f"softmax attention (impl='auto') uses PyTorch SDPA instead of xformers: {problem}", stacklevel=3)


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
    return _xformers_build_problem_cached()


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
            else SDPA (warning once, with the install that fixes it, when xformers is installed but its
            kernels cannot load); ``xformers`` insists (a ``ValueError`` says why it cannot run); ``sdpa`` always
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
        if q.device.type == "cuda" and q.dtype in _AUTO_XFORMERS_DTYPES:
            problem = xformers_unavailable_reason(q)
            if problem is None:
                return "xformers"
            _warn_xformers_fallback(problem)
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
