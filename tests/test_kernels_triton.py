"""Triton linear-attention kernels (forward and backward) against the naive form.

Every case runs in one of two ways, chosen by its first parameter:

* ``interpret``: in Triton's CPU interpreter, which is only used if ``TRITON_INTERPRET=1`` is set
  before the kernels are *defined* (decorated). Other test modules may already have imported them, so
  the outer test re-runs this file in a fresh pytest subprocess with the variable set (and
  ``-m "not cuda"``); inside it the ``interpret`` cases run for real.
* ``cuda`` (marker ``cuda``; ``pytest -m cuda`` on a GPU machine, see ``benchmarks/gpu_check.py``):
  compiled for the GPU, every interpreter shape in fp32, bf16 and fp16, plus model-sized shapes (head
  dims 64 and 128, chunk 64) that are too slow to interpret and that meet the limits a real compile
  has and the interpreter does not (``tl.dot`` block shapes, registers, shared memory). Without CUDA
  they skip with a reason (``tests/conftest.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (`pip install -e .[dev]` or `.[gpu]` brings it)")

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
DTYPES = (torch.float32, torch.bfloat16, torch.float16)

# (causal, feature, dtype, tq, tk, e_dim); q/k head dim 8, chunk 16: the interpreter's cases
SMALL_CASES = [
    (True, "elu+1", torch.float32, 37, 37, 40),  # value dim split over several scan programs
    (True, "relu", torch.float32, 37, 37, 5),
    (True, "elu+1", torch.float32, 9, 23, 5),  # unequal lengths: aligned (left-padded) first
    (False, "elu+1", torch.float32, 20, 45, 5),
    (False, "relu", torch.float32, 33, 33, 5),
    (True, "elu+1", torch.bfloat16, 37, 37, 5),
    (True, "elu+1", torch.float16, 37, 37, 5),
    (False, "elu+1", torch.float16, 30, 19, 5),
]
# (causal, feature, tq, tk, head dim, e_dim, chunk): model-sized, compiled on CUDA only
LARGE_CASES = [
    (True, "elu+1", 300, 300, 64, 64, 64),  # the GPU CharLM recipes' heads (d_model 384 / 6 heads)
    (True, "elu+1", 520, 520, 128, 128, 64),  # the benchmark's heads (D = 128)
    (False, "relu", 200, 330, 128, 128, 64),
]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _kernel_params() -> list:
    params = [
        pytest.param("interpret", causal, feature, dtype, tq, tk, 8, e_dim, 16, id=f"interp-{i}-{_dtype_name(dtype)}")
        for i, (causal, feature, dtype, tq, tk, e_dim) in enumerate(SMALL_CASES)
    ]
    shapes = list(dict.fromkeys((c, f, tq, tk, 8, e, 16) for c, f, _, tq, tk, e in SMALL_CASES))
    shapes += LARGE_CASES
    for i, (causal, feature, tq, tk, d, e_dim, chunk) in enumerate(shapes):
        for dtype in DTYPES:
            params.append(
                pytest.param(
                    "cuda", causal, feature, dtype, tq, tk, d, e_dim, chunk,
                    id=f"cuda-{i}-{_dtype_name(dtype)}-d{d}", marks=pytest.mark.cuda,
                )
            )  # fmt: skip
    return params


KERNEL_PARAMS = _kernel_params()
DEVICE_PARAMS = [pytest.param("interpret"), pytest.param("cuda", marks=pytest.mark.cuda)]
N_INTERPRET_TESTS = sum(1 for p in KERNEL_PARAMS if p.values[0] == "interpret") + 1  # + the error checks


def _device(mode: str) -> str:
    """The tensors' device for ``mode``, or skip (saying why) where that mode cannot run in this process."""
    if mode == "interpret":
        if not INTERPRET:
            pytest.skip("runs in the TRITON_INTERPRET=1 subprocess (test_triton_kernels_under_interpreter)")
        return "cpu"
    if INTERPRET:
        pytest.skip("TRITON_INTERPRET=1: kernels are interpreted in this process, not compiled")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return "cuda"


@pytest.mark.skipif(INTERPRET, reason="already running the kernels under the interpreter in this process")
def test_triton_kernels_under_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not cuda", __file__],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert "failed" not in summary and f"{N_INTERPRET_TESTS} passed" in summary, proc.stdout[-3000:]


def _case(tq, tk, d, e_dim, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(2, tq, 2, d, generator=gen)
    k = torch.randn(2, tk, 2, d, generator=gen)
    v = torch.randn(2, tk, 2, e_dim, generator=gen)
    mask = torch.rand(2, tk, generator=gen) > 0.3
    mask[0, :2] = False
    grad = torch.randn(2, tq, 2, e_dim, generator=gen)
    return [x.to(device) for x in (q, k, v, mask, grad)]


def _tolerance(dtype: torch.dtype, d: int) -> float:
    """Relative error allowed (measured under the interpreter, model-sized: fp32 1e-6, fp16 1e-3, bf16 7e-3)."""
    if dtype == torch.float32:
        return 1e-5 if d <= 16 else 1e-4
    return 3e-2 if dtype == torch.bfloat16 or d <= 16 else 1e-2


@pytest.mark.parametrize("mode,causal,feature,dtype,tq,tk,d,e_dim,chunk", KERNEL_PARAMS)
def test_triton_forward_and_backward_match_reference(mode, causal, feature, dtype, tq, tk, d, e_dim, chunk):
    from laart_lab.kernels.linear_attn.naive import naive_linear_attention
    from laart_lab.kernels.linear_attn.triton import triton_linear_attention

    q, k, v, mask, grad = _case(tq, tk, d, e_dim, _device(mode))
    q, k, v, grad = (x.to(dtype) for x in (q, k, v, grad))  # the reference sees the same rounded inputs
    ref_in = [x.double().requires_grad_() for x in (q, k, v)]
    options = dict(causal=causal, key_padding_mask=mask, feature_map=feature)
    ref = naive_linear_attention(*ref_in, **options)
    ref_grads = torch.autograd.grad(ref, ref_in, grad.double())
    inputs = [x.clone().requires_grad_() for x in (q, k, v)]
    out = triton_linear_attention(*inputs, chunk_size=chunk, **options)
    grads = torch.autograd.grad(out, inputs, grad)
    tol = _tolerance(dtype, d)
    assert out.dtype == dtype and out.device == q.device
    # absolute errors scaled by each tensor's largest entry: gradients range from 0.1 to 5 here
    torch.testing.assert_close(out.double(), ref, atol=tol * ref.abs().max().item(), rtol=tol)
    for name, g, r in zip("qkv", grads, ref_grads):
        atol = 2 * tol * r.abs().max().item()
        torch.testing.assert_close(g.double(), r, atol=atol, rtol=tol, msg=lambda m, n=name: f"d{n}: {m}")


@pytest.mark.parametrize("mode", DEVICE_PARAMS)
def test_triton_rejects_bad_chunk_and_dtype(mode):
    from laart_lab.kernels import linear_attention
    from laart_lab.kernels.linear_attn.triton import triton_linear_attention

    q, k, v, _, _ = _case(8, 8, 8, 5, _device(mode))
    with pytest.raises(ValueError, match="power of two"):
        triton_linear_attention(q, k, v, chunk_size=24)
    with pytest.raises(ValueError, match="float64"):
        triton_linear_attention(q.double(), k.double(), v.double())
    with pytest.raises(ValueError, match="unknown feature_map 'tanh'"):
        triton_linear_attention(q, k, v, feature_map="tanh")
    with pytest.raises(ValueError, match="power of two"):  # the dispatcher checks for the impl it resolved
        linear_attention(q, k, v, impl="triton", chunk_size=24)
