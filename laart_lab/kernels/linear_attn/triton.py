"""Chunked linear attention as Triton kernels (forward and backward), the default on CUDA.

Same equations as :mod:`.chunk` (read its docstring first), organised for a GPU in two
phases so that the sequence, not only batch x heads, provides parallelism:

1. a *scan* kernel per (batch, head) walks the chunks in order and writes the fp32 state *before*
   each chunk (``S = Σ φ(k) vᵀ`` and ``z = Σ φ(k)``; one small dot per chunk), plus the total;
2. a *chunk* kernel, one program per (chunk, batch, head), adds the masked ``BC x BC`` intra-chunk
   part to ``φ(q) S``. The per-chunk states are ``T / BC`` matrices of ``D x E`` fp32: O(T) memory,
   never ``[T, D, E]``.

Backward: ``_kv_scan_kernel`` is re-run (states are not kept between forward and backward),
``_bwd_dq_kernel`` gives ``dq`` per chunk, ``_qg_scan_kernel`` walks the chunks in reverse for the
suffix states ``R = Σ φ(q) dnumᵀ`` and ``u = Σ dden φ(q)``, and ``_bwd_dkv_kernel`` gives ``dk`` and
``dv`` per chunk. Non-causal attention uses the totals for every chunk and skips the intra part.

fp16/bf16 inputs feed the tensor-core dots in their own dtype with fp32 accumulation (states stay
fp32); fp32 inputs use exact fp32 dots. With ``TRITON_INTERPRET=1`` set *before this module is
imported*, the kernels run in Triton's CPU interpreter: that is how the test suite checks them on
machines without a GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from typing_extensions import Unpack

from laart_lab.kernels.linear_attn.utils import (
    DEFAULT_CHUNK_SIZE,
    TRITON_DTYPES,
    FeatureMap,
    LinearAttentionOptions,
    align_causal,
    check_chunk_size,
    resolve_options,
    triton_interpreting,
)

# The FEATURE constexpr of the kernels: _phi/_dphi branch on these codes.
_FEATURE_CODES: dict[FeatureMap, int] = {"elu+1": 0, "relu": 1}


@triton.jit
def _phi(x, FEATURE: tl.constexpr):
    if FEATURE == 0:  # elu + 1
        return tl.where(x > 0, x + 1.0, tl.exp(tl.minimum(x, 0.0)))
    else:  # relu
        return tl.maximum(x, 0.0)


@triton.jit
def _dphi(x, FEATURE: tl.constexpr):
    if FEATURE == 0:
        return tl.where(x > 0, 1.0, tl.exp(tl.minimum(x, 0.0)))
    else:
        return tl.where(x > 0, 1.0, 0.0)


@triton.jit
def _mm(a, b, PREC: tl.constexpr, DT: tl.constexpr):
    """a @ b with fp32 accumulation: PREC 0 = exact fp32, 1 = tf32, 2 = operands cast to DT (fp16/bf16)."""
    if PREC == 2:
        return tl.dot(a.to(DT), b.to(DT), out_dtype=tl.float32)
    elif PREC == 1:
        return tl.dot(a, b, input_precision="tf32", out_dtype=tl.float32)
    else:
        return tl.dot(a, b, input_precision="ieee", out_dtype=tl.float32)


@triton.jit
def _load_rows(ptr, t, t_ok, s_t, cols, c_ok, s_c):
    """Load a ``[BC, BCOLS]`` tile (rows ``t``), zero outside the tensor, as fp32."""
    return tl.load(ptr + t[:, None] * s_t + cols[None, :] * s_c, mask=t_ok[:, None] & c_ok[None, :], other=0.0).to(
        tl.float32
    )


@triton.jit
def _key_features(K, M, t, t_ok, s_kt, s_kd, s_mt, rd, d_ok, FEATURE: tl.constexpr, HAS_MASK: tl.constexpr):
    """φ(k) for rows ``t`` with padding rows (out of range or masked) set to zero; also the raw k."""
    k = _load_rows(K, t, t_ok, s_kt, rd, d_ok, s_kd)
    keep = t_ok
    if HAS_MASK:
        keep = keep & (tl.load(M + t * s_mt, mask=t_ok, other=0.0) > 0.5)
    kf = tl.where(keep[:, None] & d_ok[None, :], _phi(k, FEATURE), 0.0)
    return kf, k, keep


@triton.jit
def _state_ptrs(HS, ZS, bh, c, NS, D, E, rd, re):
    """Pointers to the ``[BD, BE]`` state and ``[BD]`` normaliser of (batch*head ``bh``, slot ``c``)."""
    slot = bh.to(tl.int64) * NS + c  # int64: B*H*slots*D*E can pass 2**31
    hs = HS + slot * D * E + rd[:, None] * E + re[None, :]
    zs = ZS + slot * D + rd
    return hs, zs


@triton.jit
def _kv_scan_kernel(
    K, V, M, HS, ZS,
    s_kb, s_kt, s_kh, s_kd,
    s_vb, s_vt, s_vh, s_ve,
    s_mb, s_mt,
    TK, H, D, E, NS,
    FEATURE: tl.constexpr, HAS_MASK: tl.constexpr, PREC: tl.constexpr,
    BC: tl.constexpr, BD: tl.constexpr, BE: tl.constexpr,
):  # fmt: skip
    """Forward scan: slot c <- state before key chunk c (c < n_chunks); slot n_chunks <- the total."""
    bh = tl.program_id(0)
    pid_e = tl.program_id(1)
    b = (bh // H).to(tl.int64)  # int64 offsets: b * stride can pass 2**31 on long batches
    h = bh % H
    DT = K.dtype.element_ty
    rc = tl.arange(0, BC)
    rd = tl.arange(0, BD)
    re = pid_e * BE + tl.arange(0, BE)
    d_ok = rd < D
    e_ok = re < E
    Kp = K + b * s_kb + h * s_kh
    Vp = V + b * s_vb + h * s_vh
    Mp = M + b * s_mb
    state = tl.zeros([BD, BE], dtype=tl.float32)
    zsum = tl.zeros([BD], dtype=tl.float32)
    n_chunks = tl.cdiv(TK, BC)
    for c in range(0, n_chunks):
        hs, zs = _state_ptrs(HS, ZS, bh, c, NS, D, E, rd, re)
        tl.store(hs, state, mask=d_ok[:, None] & e_ok[None, :])
        if pid_e == 0:
            tl.store(zs, zsum, mask=d_ok)
        t = c * BC + rc
        t_ok = t < TK
        kf, _k, _keep = _key_features(Kp, Mp, t, t_ok, s_kt, s_kd, s_mt, rd, d_ok, FEATURE, HAS_MASK)
        v = _load_rows(Vp, t, t_ok, s_vt, re, e_ok, s_ve)
        state += _mm(tl.trans(kf), v, PREC, DT)
        zsum += tl.sum(kf, 0)
    hs, zs = _state_ptrs(HS, ZS, bh, n_chunks, NS, D, E, rd, re)
    tl.store(hs, state, mask=d_ok[:, None] & e_ok[None, :])
    if pid_e == 0:
        tl.store(zs, zsum, mask=d_ok)


@triton.jit
def _fwd_kernel(
    Q, K, V, M, O, DEN, HS, ZS,
    s_qb, s_qt, s_qh, s_qd,
    s_kb, s_kt, s_kh, s_kd,
    s_vb, s_vt, s_vh, s_ve,
    s_ob, s_ot, s_oh, s_oe,
    s_mb, s_mt,
    s_db, s_dt, s_dh,
    TQ, TK, H, D, E, NS, eps,
    FEATURE: tl.constexpr, CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr, PREC: tl.constexpr,
    BC: tl.constexpr, BD: tl.constexpr, BE: tl.constexpr,
):  # fmt: skip
    """One query chunk: ``o = (φ(q) S + tril(φ(q) φ(k)ᵀ) v) / (φ(q)·z + rowsum + eps)``."""
    c = tl.program_id(0)
    bh = tl.program_id(1)
    pid_e = tl.program_id(2)
    b = (bh // H).to(tl.int64)  # int64 offsets: b * stride can pass 2**31 on long batches
    h = bh % H
    DT = Q.dtype.element_ty
    rc = tl.arange(0, BC)
    rd = tl.arange(0, BD)
    re = pid_e * BE + tl.arange(0, BE)
    d_ok = rd < D
    e_ok = re < E
    t = c * BC + rc
    t_ok = t < TQ
    slot = c if CAUSAL else tl.cdiv(TK, BC)  # non-causal: every query sees the total
    hs, zs = _state_ptrs(HS, ZS, bh, slot, NS, D, E, rd, re)
    state = tl.load(hs, mask=d_ok[:, None] & e_ok[None, :], other=0.0)
    zsum = tl.load(zs, mask=d_ok, other=0.0)
    q = _load_rows(Q + b * s_qb + h * s_qh, t, t_ok, s_qt, rd, d_ok, s_qd)
    qf = tl.where(t_ok[:, None] & d_ok[None, :], _phi(q, FEATURE), 0.0)
    num = _mm(qf, state, PREC, DT)
    den = tl.sum(qf * zsum[None, :], 1)
    if CAUSAL:
        Kp = K + b * s_kb + h * s_kh
        kf, _k, _keep = _key_features(Kp, M + b * s_mb, t, t_ok, s_kt, s_kd, s_mt, rd, d_ok, FEATURE, HAS_MASK)
        v = _load_rows(V + b * s_vb + h * s_vh, t, t_ok, s_vt, re, e_ok, s_ve)
        scores = tl.where(rc[:, None] >= rc[None, :], _mm(qf, tl.trans(kf), PREC, DT), 0.0)
        num += _mm(scores, v, PREC, DT)
        den += tl.sum(scores, 1)
    out = num / (den + eps)[:, None]
    Op = O + b * s_ob + h * s_oh
    tl.store(Op + t[:, None] * s_ot + re[None, :] * s_oe, out.to(DT), mask=t_ok[:, None] & e_ok[None, :])
    if pid_e == 0:
        tl.store(DEN + b * s_db + h * s_dh + t * s_dt, den, mask=t_ok)


@triton.jit
def _query_grads(G, O, DEN, t, t_ok, s_gt, s_ge, s_ot, s_oe, s_dt, re, e_ok, eps):
    """``dnum = g/(den+eps)`` ``[BC, BE]`` and ``dden = -(g·o)/(den+eps)`` ``[BC]`` (zero outside)."""
    g = _load_rows(G, t, t_ok, s_gt, re, e_ok, s_ge)
    o = _load_rows(O, t, t_ok, s_ot, re, e_ok, s_oe)
    inv = 1.0 / (tl.load(DEN + t * s_dt, mask=t_ok, other=1.0) + eps)
    return g * inv[:, None], -tl.sum(g * o, 1) * inv


@triton.jit
def _bwd_dq_kernel(
    Q, K, V, M, O, DEN, G, DQ, HS, ZS,
    s_qb, s_qt, s_qh, s_qd,
    s_kb, s_kt, s_kh, s_kd,
    s_vb, s_vt, s_vh, s_ve,
    s_ob, s_ot, s_oh, s_oe,
    s_gb, s_gt, s_gh, s_ge,
    s_mb, s_mt,
    s_db, s_dt, s_dh,
    TQ, TK, H, D, E, NS, eps,
    FEATURE: tl.constexpr, CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr, PREC: tl.constexpr,
    BC: tl.constexpr, BD: tl.constexpr, BE: tl.constexpr,
):  # fmt: skip
    """One query chunk: ``dφ(q) = dnum Sᵀ + dden zᵀ + tril(dnum vᵀ + dden) φ(k)``, then ``dq = dφ(q) φ'(q)``."""
    c = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)  # int64 offsets: b * stride can pass 2**31 on long batches
    h = bh % H
    DT = Q.dtype.element_ty
    rc = tl.arange(0, BC)
    rd = tl.arange(0, BD)
    re = tl.arange(0, BE)
    d_ok = rd < D
    e_ok = re < E
    t = c * BC + rc
    t_ok = t < TQ
    slot = c if CAUSAL else tl.cdiv(TK, BC)
    hs, zs = _state_ptrs(HS, ZS, bh, slot, NS, D, E, rd, re)
    state = tl.load(hs, mask=d_ok[:, None] & e_ok[None, :], other=0.0)  # [BD, BE]
    zsum = tl.load(zs, mask=d_ok, other=0.0)
    q = _load_rows(Q + b * s_qb + h * s_qh, t, t_ok, s_qt, rd, d_ok, s_qd)
    Gp = G + b * s_gb + h * s_gh
    Op = O + b * s_ob + h * s_oh
    dnum, dden = _query_grads(Gp, Op, DEN + b * s_db + h * s_dh, t, t_ok, s_gt, s_ge, s_ot, s_oe, s_dt, re, e_ok, eps)
    dqf = _mm(dnum, tl.trans(state), PREC, DT) + dden[:, None] * zsum[None, :]
    if CAUSAL:
        Kp = K + b * s_kb + h * s_kh
        kf, _k, _keep = _key_features(Kp, M + b * s_mb, t, t_ok, s_kt, s_kd, s_mt, rd, d_ok, FEATURE, HAS_MASK)
        v = _load_rows(V + b * s_vb + h * s_vh, t, t_ok, s_vt, re, e_ok, s_ve)
        p = tl.where(rc[:, None] >= rc[None, :], _mm(dnum, tl.trans(v), PREC, DT) + dden[:, None], 0.0)
        dqf += _mm(p, kf, PREC, DT)
    dq = dqf * _dphi(q, FEATURE)
    DQp = DQ + b * s_qb + h * s_qh  # dq shares q's strides
    tl.store(DQp + t[:, None] * s_qt + rd[None, :] * s_qd, dq.to(DT), mask=t_ok[:, None] & d_ok[None, :])


@triton.jit
def _qg_scan_kernel(
    Q, O, DEN, G, RS, US,
    s_qb, s_qt, s_qh, s_qd,
    s_ob, s_ot, s_oh, s_oe,
    s_gb, s_gt, s_gh, s_ge,
    s_db, s_dt, s_dh,
    TQ, H, D, E, NS, eps,
    FEATURE: tl.constexpr, PREC: tl.constexpr,
    BC: tl.constexpr, BD: tl.constexpr, BE: tl.constexpr,
):  # fmt: skip
    """Reverse scan: slot c <- Σ over query chunks *after* c of ``φ(q) dnumᵀ`` / ``dden φ(q)``; slot
    n_chunks <- the total over all query chunks."""
    bh = tl.program_id(0)
    b = (bh // H).to(tl.int64)  # int64 offsets: b * stride can pass 2**31 on long batches
    h = bh % H
    DT = Q.dtype.element_ty
    rc = tl.arange(0, BC)
    rd = tl.arange(0, BD)
    re = tl.arange(0, BE)
    d_ok = rd < D
    e_ok = re < E
    Qp = Q + b * s_qb + h * s_qh
    Gp = G + b * s_gb + h * s_gh
    Op = O + b * s_ob + h * s_oh
    Dp = DEN + b * s_db + h * s_dh
    r_qg = tl.zeros([BD, BE], dtype=tl.float32)
    usum = tl.zeros([BD], dtype=tl.float32)
    n_chunks = tl.cdiv(TQ, BC)
    for i in range(0, n_chunks):
        c = n_chunks - 1 - i
        rs, us = _state_ptrs(RS, US, bh, c, NS, D, E, rd, re)
        tl.store(rs, r_qg, mask=d_ok[:, None] & e_ok[None, :])
        tl.store(us, usum, mask=d_ok)
        t = c * BC + rc
        t_ok = t < TQ
        q = _load_rows(Qp, t, t_ok, s_qt, rd, d_ok, s_qd)
        qf = tl.where(t_ok[:, None] & d_ok[None, :], _phi(q, FEATURE), 0.0)
        dnum, dden = _query_grads(Gp, Op, Dp, t, t_ok, s_gt, s_ge, s_ot, s_oe, s_dt, re, e_ok, eps)
        r_qg += _mm(tl.trans(qf), dnum, PREC, DT)
        usum += tl.sum(qf * dden[:, None], 0)
    rs, us = _state_ptrs(RS, US, bh, n_chunks, NS, D, E, rd, re)
    tl.store(rs, r_qg, mask=d_ok[:, None] & e_ok[None, :])
    tl.store(us, usum, mask=d_ok)


@triton.jit
def _bwd_dkv_kernel(
    Q, K, V, M, O, DEN, G, DK, DV, RS, US,
    s_qb, s_qt, s_qh, s_qd,
    s_kb, s_kt, s_kh, s_kd,
    s_vb, s_vt, s_vh, s_ve,
    s_ob, s_ot, s_oh, s_oe,
    s_gb, s_gt, s_gh, s_ge,
    s_mb, s_mt,
    s_db, s_dt, s_dh,
    TQ, TK, H, D, E, NS, eps,
    FEATURE: tl.constexpr, CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr, PREC: tl.constexpr,
    BC: tl.constexpr, BD: tl.constexpr, BE: tl.constexpr,
):  # fmt: skip
    """One key chunk: ``dφ(k) = v Rᵀ + u + triu(v dnumᵀ + dden) φ(q)``, ``dv = φ(k) R + triu(φ(k) φ(q)ᵀ) dnum``."""
    c = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)  # int64 offsets: b * stride can pass 2**31 on long batches
    h = bh % H
    DT = Q.dtype.element_ty
    rc = tl.arange(0, BC)
    rd = tl.arange(0, BD)
    re = tl.arange(0, BE)
    d_ok = rd < D
    e_ok = re < E
    t = c * BC + rc
    t_ok = t < TK
    slot = c if CAUSAL else tl.cdiv(TQ, BC)
    rs, us = _state_ptrs(RS, US, bh, slot, NS, D, E, rd, re)
    r_qg = tl.load(rs, mask=d_ok[:, None] & e_ok[None, :], other=0.0)
    usum = tl.load(us, mask=d_ok, other=0.0)
    Kp = K + b * s_kb + h * s_kh
    kf, k, keep = _key_features(Kp, M + b * s_mb, t, t_ok, s_kt, s_kd, s_mt, rd, d_ok, FEATURE, HAS_MASK)
    v = _load_rows(V + b * s_vb + h * s_vh, t, t_ok, s_vt, re, e_ok, s_ve)
    dkf = _mm(v, tl.trans(r_qg), PREC, DT) + usum[None, :]
    dv = _mm(kf, r_qg, PREC, DT)
    if CAUSAL:  # queries of the same chunk with i >= j
        q = _load_rows(Q + b * s_qb + h * s_qh, t, t_ok, s_qt, rd, d_ok, s_qd)
        qf = tl.where(t_ok[:, None] & d_ok[None, :], _phi(q, FEATURE), 0.0)
        Gp = G + b * s_gb + h * s_gh
        Op = O + b * s_ob + h * s_oh
        Dp = DEN + b * s_db + h * s_dh
        dnum, dden = _query_grads(Gp, Op, Dp, t, t_ok, s_gt, s_ge, s_ot, s_oe, s_dt, re, e_ok, eps)
        upper = rc[:, None] <= rc[None, :]  # [key j, query i]
        p = tl.where(upper, _mm(v, tl.trans(dnum), PREC, DT) + dden[None, :], 0.0)
        dkf += _mm(p, qf, PREC, DT)
        dv += _mm(tl.where(upper, _mm(kf, tl.trans(qf), PREC, DT), 0.0), dnum, PREC, DT)
    dk = tl.where(keep[:, None], dkf * _dphi(k, FEATURE), 0.0)
    DKp = DK + b * s_kb + h * s_kh  # dk shares k's strides, dv v's
    DVp = DV + b * s_vb + h * s_vh
    tl.store(DKp + t[:, None] * s_kt + rd[None, :] * s_kd, dk.to(DT), mask=t_ok[:, None] & d_ok[None, :])
    tl.store(DVp + t[:, None] * s_vt + re[None, :] * s_ve, dv.to(DT), mask=t_ok[:, None] & e_ok[None, :])


def _block(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def _dot_precision(dtype: torch.dtype, backward: bool) -> int:
    """The ``PREC`` of :func:`_mm`: exact fp32 dots for fp32 inputs, input-dtype operands for 16-bit ones.

    Two exceptions run the 16-bit case in tf32 instead: the fp16 *backward*, whose ``g / (den + eps)``
    operands reach ~1/eps for queries that see no key and would overflow fp16 (bf16 has fp32's
    range); and bf16 under the CPU interpreter, whose bf16 ``tl.dot`` is wrong (Triton 3.x reads the
    raw bits as integers).
    """
    if dtype == torch.float32:
        return 0
    if backward and dtype == torch.float16:
        return 1
    if dtype == torch.bfloat16 and triton_interpreting():
        return 1
    return 2


def _kv_states(q, k, v, mask, consts: dict) -> tuple[Tensor, Tensor, int]:
    """Run the forward scan: per-chunk states ``[B*H, n_chunks + 1, D, E]`` and ``[B*H, n_chunks + 1, D]``.

    The scan is sequential over chunks, so it is split over value columns (32 per program) to give
    the GPU more programs when batch x heads is small.
    """
    bsz, tk, h, d = k.shape
    e_dim = v.shape[-1]
    be = min(_block(e_dim), 32)
    slots = triton.cdiv(tk, consts["BC"]) + 1
    hs = torch.empty(bsz * h, slots, d, e_dim, dtype=torch.float32, device=k.device)
    zs = torch.empty(bsz * h, slots, d, dtype=torch.float32, device=k.device)
    _kv_scan_kernel[(bsz * h, triton.cdiv(e_dim, be))](
        k, v, mask, hs, zs, *k.stride(), *v.stride(), *mask.stride(), tk, h, d, e_dim, slots,
        FEATURE=consts["FEATURE"], HAS_MASK=consts["HAS_MASK"], PREC=consts["PREC"],
        BC=consts["BC"], BD=consts["BD"], BE=be, num_warps=4,
    )  # fmt: skip
    return hs, zs, slots


class TritonLinearAttentionFunction(torch.autograd.Function):
    """Autograd wrapper over the kernels; saves ``q, k, v, mask, out, den`` (O(T) memory)."""

    @staticmethod
    def forward(ctx, q, k, v, key_padding_mask, feature, causal, eps, chunk_size):  # type: ignore[override]
        bsz, tq, h, d = q.shape
        e_dim = v.shape[-1]
        mask = (
            key_padding_mask.to(torch.float32).contiguous()
            if key_padding_mask is not None
            else torch.empty(bsz, 1, dtype=torch.float32, device=q.device)
        )
        consts = dict(
            FEATURE=_FEATURE_CODES[feature],
            CAUSAL=causal,
            HAS_MASK=key_padding_mask is not None,
            PREC=_dot_precision(q.dtype, backward=False),
            BC=chunk_size,
            BD=_block(d),
        )
        be = min(_block(e_dim), 64)
        hs, zs, slots = _kv_states(q, k, v, mask, consts)
        out = torch.empty(bsz, tq, h, e_dim, dtype=q.dtype, device=q.device)
        den = torch.empty(bsz, tq, h, dtype=torch.float32, device=q.device)
        _fwd_kernel[(triton.cdiv(tq, chunk_size), bsz * h, triton.cdiv(e_dim, be))](
            q, k, v, mask, out, den, hs, zs,
            *q.stride(), *k.stride(), *v.stride(), *out.stride(), *mask.stride(), *den.stride(),
            tq, k.shape[1], h, d, e_dim, slots, eps, BE=be, num_warps=4, **consts,
        )  # fmt: skip
        ctx.save_for_backward(q, k, v, mask, out, den)
        ctx.consts = consts
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        q, k, v, mask, out, den = ctx.saved_tensors
        bsz, tq, h, d = q.shape
        tk, e_dim = k.shape[1], v.shape[-1]
        eps = ctx.eps
        g = grad_out.contiguous()
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        # dq/dk/dv are written with q/k/v's strides: make sure empty_like kept them
        assert dq.stride() == q.stride() and dk.stride() == k.stride() and dv.stride() == v.stride()
        consts = {**ctx.consts, "PREC": _dot_precision(q.dtype, backward=True)}
        be = _block(e_dim)  # the backward kernels hold all value columns
        bc = consts["BC"]
        strides = (*q.stride(), *k.stride(), *v.stride(), *out.stride(), *g.stride(), *mask.stride(), *den.stride())
        hs, zs, slots = _kv_states(q, k, v, mask, consts)
        _bwd_dq_kernel[(triton.cdiv(tq, bc), bsz * h)](
            q, k, v, mask, out, den, g, dq, hs, zs, *strides, tq, tk, h, d, e_dim, slots, eps,
            BE=be, num_warps=8, **consts,
        )  # fmt: skip
        del hs, zs
        q_slots = triton.cdiv(tq, bc) + 1
        rs = torch.empty(bsz * h, q_slots, d, e_dim, dtype=torch.float32, device=q.device)
        us = torch.empty(bsz * h, q_slots, d, dtype=torch.float32, device=q.device)
        _qg_scan_kernel[(bsz * h,)](
            q, out, den, g, rs, us, *q.stride(), *out.stride(), *g.stride(), *den.stride(),
            tq, h, d, e_dim, q_slots, eps,
            FEATURE=consts["FEATURE"], PREC=consts["PREC"], BC=bc, BD=consts["BD"], BE=be, num_warps=4,
        )  # fmt: skip
        _bwd_dkv_kernel[(triton.cdiv(tk, bc), bsz * h)](
            q, k, v, mask, out, den, g, dk, dv, rs, us, *strides, tq, tk, h, d, e_dim, q_slots, eps,
            BE=be, num_warps=8, **consts,
        )  # fmt: skip
        return dq, dk, dv, None, None, None, None, None


def triton_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    **options: Unpack[LinearAttentionOptions],
) -> Tensor:
    """Chunked linear attention on CUDA (or under ``TRITON_INTERPRET=1``); fp32, fp16 or bf16 inputs."""
    causal, key_padding_mask, feature, eps = resolve_options(options)
    check_chunk_size(chunk_size, "triton")
    if q.dtype not in TRITON_DTYPES:
        raise ValueError(
            f"the Triton linear-attention kernels take float32/float16/bfloat16, got {q.dtype}; "
            "use impl='chunked' (e.g. for float64 gradcheck)"
        )
    drop = 0
    if causal and q.shape[1] != k.shape[1]:
        q, k, v, key_padding_mask, drop = align_causal(q, k, v, key_padding_mask)
    # Strided loads handle any layout, but dq/dk/dv reuse q/k/v's strides: densify odd views once.
    q, k, v = (x if x.is_contiguous() else x.contiguous() for x in (q, k, v))
    out = TritonLinearAttentionFunction.apply(q, k, v, key_padding_mask, feature, causal, eps, chunk_size)
    return out[:, drop:] if drop else out
