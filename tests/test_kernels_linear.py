"""Linear-attention kernels (chunked PyTorch, recurrent) against the naive quadratic reference."""

from __future__ import annotations

import pytest
import torch

from laart_lab.kernels import LinearRecurrentState, linear_attention, resolve_linear_impl
from laart_lab.kernels.linear_chunked import chunked_forward, linear_attention_chunked
from laart_lab.kernels.linear_reference import linear_attention_reference


def _qkv(b, tq, tk, h, d, e, dtype=torch.float32, seed=0, grad=False):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, t, h, n, generator=gen, dtype=dtype) for t, n in ((tq, d), (tk, d), (tk, e)))
    return [x.requires_grad_(grad) for x in (q, k, v)]


def _mask(b, tk, seed=1):
    mask = torch.rand(b, tk, generator=torch.Generator().manual_seed(seed)) > 0.3
    mask[0, :3] = False  # left padding: the first queries of sequence 0 see no key at all
    return mask


def test_reference_matches_hand_worked_example():
    # One head, relu features: q = [1, 0], keys [1, 0] and [1, 1], values 2 and 4.
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).view(1, 2, 1, 2)
    k = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).view(1, 2, 1, 2)
    v = torch.tensor([[2.0], [4.0]]).view(1, 2, 1, 1)
    out = linear_attention_reference(q, k, v, causal=True, feature="relu", eps=0.0)
    # query 0 sees key 0 only -> 2; query 1: scores 1 and 1 -> (2 + 4) / 2 = 3
    assert out.flatten().tolist() == pytest.approx([2.0, 3.0])
    out = linear_attention_reference(q, k, v, causal=False, feature="relu", eps=0.0)
    assert out.flatten().tolist() == pytest.approx([3.0, 3.0])


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("feature", ["elu+1", "relu"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("length,chunk", [(37, 8), (64, 16), (5, 16), (203, 32)])
def test_chunked_matches_reference_fp32(causal, feature, masked, length, chunk):
    q, k, v = _qkv(2, length, length, 3, 8, 5)
    mask = _mask(2, length) if masked else None
    ref = linear_attention_reference(q, k, v, causal, mask, feature)
    # block_tokens small so that several blocks (state carried block to block) are exercised
    out = linear_attention_chunked(q, k, v, causal, mask, feature, chunk_size=chunk, block_tokens=2 * chunk)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("tq,tk", [(7, 30), (30, 7), (1, 19)])
def test_unequal_lengths_follow_the_contract(causal, tq, tk):
    """Causal: query i sees keys j <= i + kv_len - q_len (queries aligned with the end of the keys)."""
    q, k, v = _qkv(2, tq, tk, 2, 8, 4)
    mask = torch.ones(2, tk, dtype=torch.bool)
    mask[1, -2:] = False
    ref = linear_attention_reference(q, k, v, causal, mask)
    out = linear_attention(q, k, v, causal, mask, impl="chunked", chunk_size=8)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    if causal and tq > tk:  # the first tq - tk queries have no key: zeros
        assert out[:, : tq - tk].abs().max() == 0


@pytest.mark.parametrize("dtype,atol", [(torch.bfloat16, 2e-2), (torch.float16, 4e-3)])
@pytest.mark.parametrize("causal", [True, False])
def test_chunked_half_precision_keeps_fp32_states(dtype, atol, causal):
    """Over 3000 tokens a 16-bit running state would drift by far more than one output rounding."""
    q, k, v = _qkv(1, 3000, 3000, 2, 16, 16, dtype=dtype)
    ref = linear_attention_reference(q.double(), k.double(), v.double(), causal)
    out = linear_attention_chunked(q, k, v, causal, chunk_size=64)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), ref, atol=atol, rtol=atol)
    _, den = chunked_forward(q, k, v, None, "elu+1", causal)
    assert den.dtype == torch.float32


def test_chunk_and_block_sizes_do_not_change_the_result():
    q, k, v = _qkv(1, 150, 150, 2, 8, 8)
    outs = [
        linear_attention_chunked(q, k, v, True, chunk_size=c, block_tokens=b)
        for c, b in ((1, 1), (16, 16), (16, 64), (64, 4096), (150, 150))
    ]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("feature", ["elu+1", "relu"])
def test_chunked_gradients_match_reference(causal, feature):
    q, k, v = _qkv(2, 45, 45, 2, 8, 6, grad=True)
    mask = _mask(2, 45)
    grad_out = torch.randn(2, 45, 2, 6, generator=torch.Generator().manual_seed(5))
    ref = torch.autograd.grad(linear_attention_reference(q, k, v, causal, mask, feature), (q, k, v), grad_out)
    out = linear_attention_chunked(q, k, v, causal, mask, feature, chunk_size=8, block_tokens=16)
    got = torch.autograd.grad(out, (q, k, v), grad_out)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("feature", ["elu+1", "relu"])
def test_chunked_gradcheck_float64(causal, feature):
    q, k, v = _qkv(1, 11, 11, 2, 3, 2, dtype=torch.float64, grad=True)
    if feature == "relu":  # keep inputs away from relu's kink, where finite differences are meaningless
        with torch.no_grad():
            for x in (q, k):
                x.add_(0.1 * torch.sign(x))
    mask = torch.tensor([[False, True, True, True, False, True, True, True, True, True, True]])

    def fn(q, k, v):
        return linear_attention_chunked(q, k, v, causal, mask, feature, chunk_size=3, block_tokens=6)

    assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("feature", ["elu+1", "relu"])
def test_recurrent_equals_parallel_token_by_token(feature):
    q, k, v = _qkv(2, 40, 40, 3, 8, 5)
    parallel = linear_attention(q, k, v, causal=True, feature=feature, impl="chunked", chunk_size=16)
    state = LinearRecurrentState(feature)
    for t in range(40):
        step = state.step(q[:, t : t + 1], k[:, t : t + 1], v[:, t : t + 1])
        torch.testing.assert_close(step, parallel[:, t : t + 1], atol=1e-5, rtol=1e-5)
    # O(1) state: fixed-size tensors, whatever the number of tokens consumed
    assert state.state is not None and tuple(state.state.shape) == (2, 3, 8, 5)
    assert state.state.dtype == torch.float32 and state.tokens_seen == 40


def test_dispatcher_errors_are_clear():
    q, k, v = _qkv(1, 4, 4, 1, 4, 4)
    with pytest.raises(ValueError, match="impl='triton' runs on CUDA tensors"):
        linear_attention(q, k, v, impl="triton")
    with pytest.raises(ValueError, match="unknown linear-attention impl"):
        linear_attention(q, k, v, impl="fast")
    with pytest.raises(ValueError, match="feature_map"):
        linear_attention(q, k, v, feature="tanh")
    with pytest.raises(ValueError, match="laid out"):
        linear_attention(q[0], k, v)


def test_auto_picks_chunked_on_cpu_and_triton_on_cuda():
    assert resolve_linear_impl("auto", torch.device("cpu")) == "chunked"
    assert resolve_linear_impl("auto", torch.device("cuda"), torch.float64) == "chunked"  # no fp64 kernels
    pytest.importorskip("triton")
    assert resolve_linear_impl("auto", torch.device("cuda"), torch.bfloat16) == "triton"
