"""The ``softmax`` backend: SDPA path against a naive softmax, and xformers' refusals on CPU."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from laart_lab.attention import SoftmaxAttention, xformers_unavailable_reason
from laart_lab.attention import softmax as softmax_module


def naive_softmax_attention(q, k, v, causal=False, key_padding_mask=None):
    """Independent reference: explicit loops over queries, float64, contract semantics."""
    b, tq, h, _ = q.shape
    tk = k.shape[1]
    out = torch.zeros(b, tq, h, v.shape[-1], dtype=torch.float64)
    for bi in range(b):
        for i in range(tq):
            keys = [j for j in range(tk) if not causal or j <= i + tk - tq]
            if key_padding_mask is not None:
                keys = [j for j in keys if key_padding_mask[bi, j]]
            if not keys:
                continue  # no allowed key: zeros
            for hi in range(h):
                scores = torch.stack([q[bi, i, hi].double() @ k[bi, j, hi].double() for j in keys])
                weights = torch.softmax(scores / math.sqrt(q.shape[-1]), 0)
                out[bi, i, hi] = sum(w * v[bi, j, hi].double() for w, j in zip(weights, keys))
    return out


def _qkv(tq, tk, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(2, t, 3, 8, generator=gen) for t in (tq, tk, tk))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("tq,tk", [(9, 9), (4, 11), (11, 4), (1, 7)])
@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_matches_naive_softmax(causal, tq, tk, masked):
    q, k, v = _qkv(tq, tk)
    mask = None
    if masked:
        mask = torch.ones(2, tk, dtype=torch.bool)
        mask[0, : tk // 2] = False  # left padding: some causal queries of sequence 0 see no key
        mask[1, -1] = False
    out = SoftmaxAttention(impl="sdpa")(q, k, v, causal=causal, key_padding_mask=mask)
    ref = naive_softmax_attention(q, k, v, causal, mask)
    assert out.shape == (2, tq, 3, 8)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


def test_gradients_stay_finite_when_a_query_sees_no_key():
    q, k, v = (x.requires_grad_() for x in _qkv(6, 6))
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, :3] = False
    SoftmaxAttention()(q, k, v, causal=True, key_padding_mask=mask).sum().backward()
    assert all(x.grad is not None and x.grad.isfinite().all() for x in (q, k, v))


def test_auto_uses_sdpa_on_cpu_without_importing_xformers(monkeypatch):
    monkeypatch.setitem(sys.modules, "xformers", None)  # any import of xformers would now fail
    q, k, v = _qkv(5, 5)
    backend = SoftmaxAttention()
    assert backend.resolve_impl(q) == "sdpa"
    ref = naive_softmax_attention(q, k, v, True)
    torch.testing.assert_close(backend(q, k, v, causal=True).double(), ref, atol=1e-5, rtol=1e-5)


def test_xformers_on_cpu_is_a_clear_error():
    q, k, v = _qkv(4, 4)
    with pytest.raises(ValueError, match=r"impl='xformers'.*needs CUDA tensors, got device 'cpu'"):
        SoftmaxAttention(impl="xformers")(q, k, v)
    reason = xformers_unavailable_reason(q.double())
    assert reason is not None and "device 'cpu'" in reason and "torch.float64" in reason


def test_xformers_build_problems_are_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "xformers", None)
    assert "not installed" in (softmax_module._xformers_build_problem() or "")
    monkeypatch.delitem(sys.modules, "xformers")
    xformers = pytest.importorskip("xformers")
    if getattr(xformers, "_has_cpp_library", False):
        pytest.skip("this xformers build has its compiled kernels")
    assert "no compiled C++/CUDA extensions" in (softmax_module._xformers_build_problem() or "")


def test_unknown_impl_is_rejected():
    with pytest.raises(ValueError, match="unknown impl 'flash'"):
        SoftmaxAttention(impl="flash")  # type: ignore[arg-type]


def test_attention_weights_reproduce_the_output():
    q, k, v = _qkv(6, 9)
    backend = SoftmaxAttention()
    weights = backend.attention_weights(q, k, causal=True)
    assert weights.shape == (2, 3, 6, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 6))
    via_weights = torch.einsum("bhqk,bkhe->bqhe", weights, v)
    torch.testing.assert_close(via_weights, backend(q, k, v, causal=True), atol=1e-5, rtol=1e-5)


def test_default_decoding_state_matches_causal_forward():
    q, k, v = _qkv(7, 7)
    backend = SoftmaxAttention()
    full = backend(q, k, v, causal=True)
    state = backend.decoding_state()
    for t in range(7):
        step = state.step(q[:, t : t + 1], k[:, t : t + 1], v[:, t : t + 1])
        torch.testing.assert_close(step, full[:, t : t + 1], atol=1e-5, rtol=1e-5)
