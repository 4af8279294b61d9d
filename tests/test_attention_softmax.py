"""The ``softmax`` backend: SDPA path against a naive softmax, and xformers' refusals on CPU."""

from __future__ import annotations

import importlib.util
import math
import sys
import types
import warnings

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
    problem = softmax_module._xformers_build_problem() or ""
    assert "not installed" in problem and "pip install -e .[gpu]" in problem


def _fake_broken_xformers(monkeypatch):
    """An xformers 0.0.35 whose kernels did not load, built for torch 2.10.0+cu128 (as on a CPU install)."""
    fake = types.ModuleType("xformers")
    fake.__version__, fake._has_cpp_library = "0.0.35", False
    monkeypatch.setitem(sys.modules, "xformers", fake)
    monkeypatch.setitem(sys.modules, "xformers.ops", types.ModuleType("xformers.ops"))
    build = {"version": {"torch": "2.10.0+cu128", "cuda": 1208, "python": "3.10.19"}}
    monkeypatch.setattr(softmax_module, "xformers_build_info", lambda: build)


def test_broken_xformers_names_its_build_and_the_fix(monkeypatch):
    _fake_broken_xformers(monkeypatch)
    problem = softmax_module._xformers_build_problem() or ""
    assert "xformers 0.0.35 cannot load its compiled C++/CUDA kernels" in problem
    assert "built for torch 2.10.0+cu128 (CUDA 1208)" in problem and torch.__version__ in problem
    assert "pip install torch==2.10.0 --index-url https://download.pytorch.org/whl/cu128" in problem


def test_auto_warns_once_when_xformers_is_broken_and_uses_sdpa(monkeypatch):
    _fake_broken_xformers(monkeypatch)
    monkeypatch.setattr(softmax_module, "_xformers_build_problem_cached", softmax_module._xformers_build_problem)
    monkeypatch.setattr(softmax_module, "_warned_fallback", False)
    cuda_bf16 = types.SimpleNamespace(device=torch.device("cuda"), dtype=torch.bfloat16)  # what resolve_impl reads
    backend = SoftmaxAttention()
    with pytest.warns(UserWarning, match=r"uses PyTorch SDPA instead of xformers.*pip install torch==2\.10\.0"):
        assert backend.resolve_impl(cuda_bf16) == "sdpa"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert backend.resolve_impl(cuda_bf16) == "sdpa"  # said once
    with pytest.raises(ValueError, match=r"impl='xformers'.*cannot load.*Fix: install the torch it was built for"):
        SoftmaxAttention(impl="xformers").resolve_impl(cuda_bf16)


def test_xformers_build_info_is_read_without_importing_xformers(monkeypatch):
    monkeypatch.setitem(sys.modules, "xformers", None)
    assert softmax_module.xformers_build_info() is None  # import blocked: nothing to read
    monkeypatch.delitem(sys.modules, "xformers")
    spec = importlib.util.find_spec("xformers")
    if spec is None or not spec.submodule_search_locations:
        assert softmax_module.xformers_build_info() is None
        return
    if "xformers" in sys.modules:
        pytest.skip("xformers was already imported by an earlier test")
    info = softmax_module.xformers_build_info()
    assert info is None or info["version"]["torch"]
    assert "xformers" not in sys.modules


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


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("tq,tk", [(128, 128), (37, 200), (200, 37)])
@pytest.mark.parametrize("masked", [False, True])
def test_xformers_matches_sdpa_on_cuda(dtype, causal, tq, tk, masked):
    """xformers' kernels against SDPA on the same (rounded) inputs: forward and q/k/v gradients."""
    if importlib.util.find_spec("xformers") is None:
        pytest.skip("xformers is not installed (`pip install -e .[gpu]`, README: GPU install)")
    gen = torch.Generator().manual_seed(tq * 1000 + tk)
    q, k, v, grad = (torch.randn(2, t, 4, 64, generator=gen) for t in (tq, tk, tk, tq))
    q, k, v, grad = (x.to("cuda", dtype) for x in (q, k, v, grad))
    mask = None
    if masked:
        mask = torch.ones(2, tk, dtype=torch.bool, device="cuda")
        mask[0, : tk // 2] = False  # left padding: some causal queries of sequence 0 see no key
        mask[1, -3:] = False
    reason = xformers_unavailable_reason(q)
    assert reason is None, reason  # installed but unusable on a GPU: the check should say so, not skip

    def run(impl: str, dtype_in: torch.dtype) -> tuple:
        inputs = [x.detach().to(dtype_in, copy=True).requires_grad_() for x in (q, k, v)]
        out = SoftmaxAttention(impl=impl)(*inputs, causal=causal, key_padding_mask=mask)  # type: ignore[arg-type]
        return (out, *torch.autograd.grad(out, inputs, grad.to(dtype_in)))

    got, ref = run("xformers", dtype), run("sdpa", torch.float32)  # fp32 SDPA on the same rounded inputs
    tol = {torch.float16: 5e-3, torch.bfloat16: 3e-2, torch.float32: 1e-3}[dtype]
    assert got[0].dtype == dtype
    for what, g, r in zip(("out", "dq", "dk", "dv"), got, ref):
        assert g.isfinite().all(), what
        atol = tol * max(r.abs().max().item(), 1e-3)
        torch.testing.assert_close(g.float(), r, atol=atol, rtol=tol, msg=lambda m, w=what: f"{w}: {m}")
