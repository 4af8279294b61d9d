"""Triton linear-attention kernels (forward and backward) against the naive reference.

On a machine without CUDA the kernels run in Triton's CPU interpreter, which is only used if
``TRITON_INTERPRET=1`` is set before the kernels are *defined* (decorated). Other test modules may
already have imported them, so the outer test re-runs this file in a fresh pytest subprocess with the
variable set; inside it (or on CUDA) the parametrised tests below run for real.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton")

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cuda" if torch.cuda.is_available() and not INTERPRET else "cpu"
RUNNABLE = INTERPRET or DEVICE == "cuda"


@pytest.mark.skipif(RUNNABLE, reason="already running the kernels in this process")
def test_triton_kernels_under_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert "failed" not in summary and "9 passed" in summary, proc.stdout[-3000:]  # 8 cases + error checks


needs_kernels = pytest.mark.skipif(not RUNNABLE, reason="runs in the TRITON_INTERPRET=1 subprocess")


def _case(tq, tk, dtype, e_dim=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(2, tq, 2, 8, generator=gen)
    k = torch.randn(2, tk, 2, 8, generator=gen)
    v = torch.randn(2, tk, 2, e_dim, generator=gen)
    mask = torch.rand(2, tk, generator=gen) > 0.3
    mask[0, :2] = False
    grad = torch.randn(2, tq, 2, e_dim, generator=gen)
    return [x.to(DEVICE) for x in (q, k, v, mask, grad)]


@needs_kernels
@pytest.mark.parametrize(
    "causal,feature,dtype,tq,tk,e_dim",
    [
        (True, "elu+1", torch.float32, 37, 37, 40),  # value dim split over several scan programs
        (True, "relu", torch.float32, 37, 37, 5),
        (True, "elu+1", torch.float32, 9, 23, 5),  # unequal lengths: aligned by the dispatcher
        (False, "elu+1", torch.float32, 20, 45, 5),
        (False, "relu", torch.float32, 33, 33, 5),
        (True, "elu+1", torch.bfloat16, 37, 37, 5),
        (True, "elu+1", torch.float16, 37, 37, 5),
        (False, "elu+1", torch.float16, 30, 19, 5),
    ],
)
def test_triton_forward_and_backward_match_reference(causal, feature, dtype, tq, tk, e_dim):
    from laart_lab.kernels import linear_attention
    from laart_lab.kernels.linear_reference import linear_attention_reference

    q, k, v, mask, grad = _case(tq, tk, dtype, e_dim)
    ref_in = [x.double().requires_grad_() for x in (q, k, v)]
    ref = linear_attention_reference(*ref_in, causal, mask, feature)
    ref_grads = torch.autograd.grad(ref, ref_in, grad.double())
    inputs = [x.to(dtype).requires_grad_() for x in (q, k, v)]
    out = linear_attention(*inputs, causal, mask, feature, impl="triton", chunk_size=16)
    grads = torch.autograd.grad(out, inputs, grad.to(dtype))
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), ref, atol=tol, rtol=tol)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g.double(), r, atol=tol * 4, rtol=tol)


@needs_kernels
def test_triton_rejects_bad_chunk_and_dtype():
    from laart_lab.kernels.linear_triton import linear_attention_triton

    q, k, v, _, _ = _case(8, 8, torch.float32)
    with pytest.raises(ValueError, match="power of two"):
        linear_attention_triton(q, k, v, chunk_size=24)
    with pytest.raises(ValueError, match="float64"):
        linear_attention_triton(q.double(), k.double(), v.double())
