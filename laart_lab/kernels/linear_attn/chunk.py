"""Chunked linear attention in PyTorch: the CPU default, O(T) memory, with a hand-written backward.

Algorithm (per batch and head, sequence cut into chunks of ``chunk_size`` tokens):

* inside a chunk the causal part is the small quadratic form ``tril(φ(Q)φ(K)ᵀ) V``;
* across chunks a running fp32 state ``S = Σ φ(k) vᵀ`` (``[D, E]``) and ``z = Σ φ(k)`` carries the past.

Chunks are processed a *block* (several chunks) at a time: within a block the per-chunk states are
prefix-summed in one batched op (vectorised, so Python overhead stays small) and the block's last
state is carried to the next block. Nothing of size ``[T, D, E]`` or ``[T, D]`` in fp32 is ever
materialised -- feature maps, casts and transposes are applied per block -- so peak extra memory is
a few block-sized buffers whatever T is.

The backward is written by hand (not traced by autograd) so that it has the same O(T)-memory block
structure: with ``dnum = g / (den + eps)`` and ``dden = -(g·o) / (den + eps)``,

* ``dφ(q)_i = Σ_{j<=i} (dnum_i·v_j + dden_i) φ(k_j)``                 (forward in time),
* ``dφ(k)_j = Σ_{i>=j} (dnum_i·v_j + dden_i) φ(q_i)``, ``dv_j = Σ_{i>=j} (φ(q_i)·φ(k_j)) dnum_i``
  (reverse in time, states ``R = Σ φ(q) dnumᵀ`` and ``u = Σ dden φ(q)``).

The Triton kernels in :mod:`.triton` implement exactly these equations. Causal mode needs
``q_len == kv_len``: :func:`chunk_linear_attention` aligns other cases (:func:`.utils.align_causal`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from typing_extensions import Unpack

from laart_lab.kernels.linear_attn.utils import (
    DEFAULT_CHUNK_SIZE,
    LinearAttentionOptions,
    accumulation_dtype,
    align_causal,
    check_chunk_size,
    feature_map,
    feature_map_grad,
    resolve_options,
)

DEFAULT_BLOCK_TOKENS = 1024  # tokens per vectorised block; a multiple of the chunk size is used


def _blocks(length: int, block: int, reverse: bool = False) -> Iterator[tuple[int, int]]:
    starts = list(range(0, length, block))
    for s in reversed(starts) if reverse else starts:
        yield s, min(s + block, length)


def _chunks(x: Tensor, s: int, e: int, rows: int, chunk: int) -> Tensor:
    """``x[:, s:e]`` (``[B, l, H, F]``, already in the compute dtype) -> ``[B, H, n, chunk, F]``, zero-padded."""
    blk = x.permute(0, 2, 1, 3)  # [B, H, l, F] view
    if e - s < rows:
        blk = F.pad(blk, (0, 0, 0, rows - (e - s)))
    b, h, _, f = blk.shape
    return blk.reshape(b, h, rows // chunk, chunk, f)


def _unchunk(x: Tensor, length: int) -> Tensor:
    """``[B, H, n, chunk, F]`` -> ``[B, length, H, F]`` view (drops the padding rows)."""
    b, h, n, c, f = x.shape
    return x.reshape(b, h, n * c, f)[:, :, :length].permute(0, 2, 1, 3)


def _exclusive_prefix(x: Tensor, carry: Tensor) -> Tensor:
    """Per-chunk states before each chunk: ``carry + Σ_{m<n} x[:, :, m]`` along dim 2.

    Built from a shifted cumsum, not ``cumsum(x) - x``: a chunk with huge entries (the ``1/eps``
    gradients of queries that see no key) would otherwise wipe out its neighbours by cancellation.
    """
    out = torch.empty_like(x)
    out[:, :, 0] = carry
    if x.shape[2] > 1:
        torch.cumsum(x[:, :, :-1], 2, out=out[:, :, 1:])
        out[:, :, 1:] += carry.unsqueeze(2)
    return out


def _exclusive_suffix(x: Tensor, carry: Tensor) -> Tensor:
    """Per-chunk states after each chunk: ``carry + Σ_{m>n} x[:, :, m]`` along dim 2."""
    return _exclusive_prefix(x.flip(2), carry).flip(2)


class _Inputs:
    """Block loader: slices, upcasts, applies φ and the key mask, reshapes into chunks."""

    def __init__(self, feature: str, chunk: int, acc: torch.dtype, mask: Tensor | None) -> None:
        self.feature, self.chunk, self.acc, self.mask = feature, chunk, acc, mask

    def rows(self, s: int, e: int) -> int:
        return -(-(e - s) // self.chunk) * self.chunk

    def raw(self, x: Tensor, s: int, e: int) -> Tensor:
        return _chunks(x[:, s:e].to(self.acc), s, e, self.rows(s, e), self.chunk)

    def query(self, q: Tensor, s: int, e: int) -> Tensor:
        return _chunks(feature_map(q[:, s:e].to(self.acc), self.feature), s, e, self.rows(s, e), self.chunk)

    def _masked_keys(self, x: Tensor, s: int, e: int) -> Tensor:
        """Key-side rows of a block with padded keys zeroed, in chunks."""
        if self.mask is not None:
            x = x * self.mask[:, s:e, None, None]
        return _chunks(x, s, e, self.rows(s, e), self.chunk)

    def key(self, k: Tensor, s: int, e: int) -> Tensor:
        return self._masked_keys(feature_map(k[:, s:e].to(self.acc), self.feature), s, e)

    def query_grad_factor(self, q: Tensor, s: int, e: int) -> Tensor:
        return _chunks(feature_map_grad(q[:, s:e].to(self.acc), self.feature), s, e, self.rows(s, e), self.chunk)

    def key_grad_factor(self, k: Tensor, s: int, e: int) -> Tensor:
        return self._masked_keys(feature_map_grad(k[:, s:e].to(self.acc), self.feature), s, e)

    def grads(self, g: Tensor, o: Tensor, den: Tensor, eps: float, s: int, e: int) -> tuple[Tensor, Tensor]:
        """``dnum = g/(den+eps)`` ``[B,H,n,C,E]`` and ``dden = -(g·o)/(den+eps)`` ``[B,H,n,C]`` of a block."""
        gb, ob = g[:, s:e].to(self.acc), o[:, s:e].to(self.acc)
        inv = 1.0 / (den[:, s:e].to(self.acc) + eps)  # [B, l, H]
        dnum = gb * inv[..., None]
        dden = -(gb * ob).sum(-1) * inv
        rows = self.rows(s, e)
        return _chunks(dnum, s, e, rows, self.chunk), _chunks(dden[..., None], s, e, rows, self.chunk)[..., 0]


def chunked_forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    feature: str,
    causal: bool,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    eps: float = 1e-6,
    block_tokens: int = DEFAULT_BLOCK_TOKENS,
) -> tuple[Tensor, Tensor]:
    """Output ``[B, Tq, H, E]`` (``q``'s dtype) and the normaliser ``den`` ``[B, Tq, H]`` (fp32/fp64)."""
    acc = accumulation_dtype(q.dtype)
    bsz, tq, h, d = q.shape
    tk, e_dim = k.shape[1], v.shape[-1]
    if causal and tq != tk:
        raise ValueError("chunked causal linear attention needs q_len == kv_len (align first)")
    mask = None if key_padding_mask is None else key_padding_mask.to(acc)
    ld = _Inputs(feature, chunk_size, acc, mask)
    block = max(1, block_tokens // chunk_size) * chunk_size
    out = torch.empty(bsz, tq, h, e_dim, dtype=q.dtype, device=q.device)
    den_out = torch.empty(bsz, tq, h, dtype=acc, device=q.device)
    state = torch.zeros(bsz, h, d, e_dim, dtype=acc, device=q.device)
    zsum = torch.zeros(bsz, h, d, dtype=acc, device=q.device)

    if not causal:
        for s, e in _blocks(tk, block):
            kf, vb = ld.key(k, s, e), ld.raw(v, s, e)
            state += torch.einsum("bhncd,bhnce->bhde", kf, vb)
            zsum += kf.sum((2, 3))
        for s, e in _blocks(tq, block):
            qf = ld.query(q, s, e)
            num = torch.matmul(qf, state.unsqueeze(2))
            den = torch.matmul(qf, zsum[:, :, None, :, None])[..., 0]
            out[:, s:e] = _unchunk(num / (den + eps)[..., None], e - s)
            den_out[:, s:e] = _unchunk(den[..., None], e - s)[..., 0]
        return out, den_out

    tril = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    for s, e in _blocks(tq, block):
        qf, kf, vb = ld.query(q, s, e), ld.key(k, s, e), ld.raw(v, s, e)
        scores = torch.matmul(qf, kf.transpose(-1, -2)).masked_fill_(~tril, 0.0)  # [B,H,n,C,C]
        kv = torch.matmul(kf.transpose(-1, -2), vb)  # [B,H,n,D,E]
        ksum = kf.sum(3)  # [B,H,n,D]
        s_before = _exclusive_prefix(kv, state)
        z_before = _exclusive_prefix(ksum, zsum)
        num = torch.matmul(scores, vb)
        num += torch.matmul(qf, s_before)
        den = scores.sum(-1)
        den += torch.matmul(qf, z_before.unsqueeze(-1))[..., 0]
        state = s_before[:, :, -1] + kv[:, :, -1]
        zsum = z_before[:, :, -1] + ksum[:, :, -1]
        num /= (den + eps).unsqueeze(-1)
        out[:, s:e] = _unchunk(num, e - s)
        den_out[:, s:e] = _unchunk(den.unsqueeze(-1), e - s)[..., 0]
    return out, den_out


def chunked_backward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_padding_mask: Tensor | None,
    out: Tensor,
    den: Tensor,
    grad: Tensor,
    feature: str,
    causal: bool,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    eps: float = 1e-6,
    block_tokens: int = DEFAULT_BLOCK_TOKENS,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of :func:`chunked_forward`'s output w.r.t. ``q, k, v`` (block-wise, O(T) memory)."""
    acc = accumulation_dtype(q.dtype)
    bsz, tq, h, d = q.shape
    tk, e_dim = k.shape[1], v.shape[-1]
    mask = None if key_padding_mask is None else key_padding_mask.to(acc)
    ld = _Inputs(feature, chunk_size, acc, mask)
    block = max(1, block_tokens // chunk_size) * chunk_size
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    s_ve = torch.zeros(bsz, h, e_dim, d, dtype=acc, device=q.device)  # Σ v φ(k)ᵀ
    zsum = torch.zeros(bsz, h, d, dtype=acc, device=q.device)
    r_qg = torch.zeros(bsz, h, d, e_dim, dtype=acc, device=q.device)  # Σ φ(q) dnumᵀ
    usum = torch.zeros(bsz, h, d, dtype=acc, device=q.device)  # Σ dden φ(q)

    if not causal:
        for s, e in _blocks(tk, block):
            kf, vb = ld.key(k, s, e), ld.raw(v, s, e)
            s_ve += torch.einsum("bhnce,bhncd->bhed", vb, kf)
            zsum += kf.sum((2, 3))
        for s, e in _blocks(tq, block):
            qf = ld.query(q, s, e)
            dnum, dden = ld.grads(grad, out, den, eps, s, e)
            dqf = torch.matmul(dnum, s_ve.unsqueeze(2)) + dden.unsqueeze(-1) * zsum[:, :, None, None, :]
            dq[:, s:e] = _unchunk(dqf * ld.query_grad_factor(q, s, e), e - s)
            r_qg += torch.einsum("bhncd,bhnce->bhde", qf, dnum)
            usum += (qf * dden.unsqueeze(-1)).sum((2, 3))
        for s, e in _blocks(tk, block):
            kf, vb = ld.key(k, s, e), ld.raw(v, s, e)
            dkf = torch.matmul(vb, r_qg.transpose(-1, -2).unsqueeze(2)) + usum[:, :, None, None, :]
            dk[:, s:e] = _unchunk(dkf * ld.key_grad_factor(k, s, e), e - s)
            dv[:, s:e] = _unchunk(torch.matmul(kf, r_qg.unsqueeze(2)), e - s)
        return dq, dk, dv

    tril = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    for s, e in _blocks(tq, block):  # forward in time: dq
        kf, vb = ld.key(k, s, e), ld.raw(v, s, e)
        dnum, dden = ld.grads(grad, out, den, eps, s, e)
        p = torch.matmul(dnum, vb.transpose(-1, -2))
        p += dden.unsqueeze(-1)
        p.masked_fill_(~tril, 0.0)
        ve = torch.matmul(vb.transpose(-1, -2), kf)  # [B,H,n,E,D]
        ksum = kf.sum(3)
        ve_before = _exclusive_prefix(ve, s_ve)
        z_before = _exclusive_prefix(ksum, zsum)
        dqf = torch.matmul(p, kf)
        dqf += torch.matmul(dnum, ve_before)
        dqf += dden.unsqueeze(-1) * z_before.unsqueeze(3)
        s_ve = ve_before[:, :, -1] + ve[:, :, -1]
        zsum = z_before[:, :, -1] + ksum[:, :, -1]
        dq[:, s:e] = _unchunk(dqf * ld.query_grad_factor(q, s, e), e - s)

    triu = tril.transpose(0, 1)
    for s, e in _blocks(tk, block, reverse=True):  # reverse in time: dk, dv
        qf, kf, vb = ld.query(q, s, e), ld.key(k, s, e), ld.raw(v, s, e)
        dnum, dden = ld.grads(grad, out, den, eps, s, e)
        p = torch.matmul(vb, dnum.transpose(-1, -2))  # [B,H,n,Cj,Ci]
        p += dden.unsqueeze(-2)
        p.masked_fill_(~triu, 0.0)
        scores_t = torch.matmul(kf, qf.transpose(-1, -2)).masked_fill_(~triu, 0.0)  # [B,H,n,Cj,Ci]
        qg = torch.matmul(qf.transpose(-1, -2), dnum)  # [B,H,n,D,E]
        uq = (qf * dden.unsqueeze(-1)).sum(3)  # [B,H,n,D]
        r_after = _exclusive_suffix(qg, r_qg)
        u_after = _exclusive_suffix(uq, usum)
        dkf = torch.matmul(p, qf)
        dkf += torch.matmul(vb, r_after.transpose(-1, -2))
        dkf += u_after.unsqueeze(3)
        dvb = torch.matmul(scores_t, dnum)
        dvb += torch.matmul(kf, r_after)
        r_qg = r_after[:, :, 0] + qg[:, :, 0]
        usum = u_after[:, :, 0] + uq[:, :, 0]
        dk[:, s:e] = _unchunk(dkf * ld.key_grad_factor(k, s, e), e - s)
        dv[:, s:e] = _unchunk(dvb, e - s)
    return dq, dk, dv


class ChunkedLinearAttentionFunction(torch.autograd.Function):
    """Autograd wrapper: :func:`chunked_forward` forward, :func:`chunked_backward` backward."""

    @staticmethod
    def forward(ctx, q, k, v, key_padding_mask, feature, causal, chunk_size, eps, block_tokens):  # type: ignore[override]
        out, den = chunked_forward(q, k, v, key_padding_mask, feature, causal, chunk_size, eps, block_tokens)
        ctx.save_for_backward(q, k, v, key_padding_mask, out, den)
        ctx.config = (feature, causal, chunk_size, eps, block_tokens)
        ctx.mark_non_differentiable(den)
        return out, den

    @staticmethod
    def backward(ctx, grad_out, _grad_den):  # type: ignore[override]
        q, k, v, mask, out, den = ctx.saved_tensors
        feature, causal, chunk_size, eps, block_tokens = ctx.config
        dq, dk, dv = chunked_backward(q, k, v, mask, out, den, grad_out, feature, causal, chunk_size, eps, block_tokens)
        return dq, dk, dv, None, None, None, None, None, None


def chunk_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    block_tokens: int = DEFAULT_BLOCK_TOKENS,
    **options: Unpack[LinearAttentionOptions],
) -> Tensor:
    """Chunked linear attention (see the module docstring); differentiable w.r.t. ``q, k, v``.

    ``block_tokens`` bounds the tokens processed per vectorised step (memory, not the result).
    """
    causal, key_padding_mask, feature, eps = resolve_options(options)
    check_chunk_size(chunk_size, "chunked")
    drop = 0
    if causal and q.shape[1] != k.shape[1]:
        q, k, v, key_padding_mask, drop = align_causal(q, k, v, key_padding_mask)
    out, _ = ChunkedLinearAttentionFunction.apply(
        q, k, v, key_padding_mask, feature, causal, chunk_size, eps, block_tokens
    )
    return out[:, drop:] if drop else out
