"""The linear-attention family (chunked PyTorch, recurrent, dispatcher) against the naive quadratic form.

The naive form is itself checked by hand on a tiny example first; every other implementation is then
compared with it (the Triton kernels in ``test_kernels_triton.py``).
"""

from __future__ import annotations

import inspect
import typing

import pytest
import torch

from laart_lab.kernels import FEATURE_MAPS, LINEAR_IMPLS, LinearRecurrentState, linear_attention, resolve_linear_impl
from laart_lab.kernels.linear_attn import chunk, dispatch, naive, utils
from laart_lab.kernels.linear_attn.chunk import chunk_linear_attention, chunked_forward
from laart_lab.kernels.linear_attn.naive import naive_linear_attention
from laart_lab.kernels.linear_attn.utils import DEFAULT_OPTIONS, LinearAttentionOptions, feature_map, feature_map_grad


def _qkv(b, tq, tk, h, d, e, dtype=torch.float32, seed=0, grad=False):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, t, h, n, generator=gen, dtype=dtype) for t, n in ((tq, d), (tk, d), (tk, e)))
    return [x.requires_grad_(grad) for x in (q, k, v)]


def _mask(b, tk, seed=1):
    mask = torch.rand(b, tk, generator=torch.Generator().manual_seed(seed)) > 0.3
    mask[0, :3] = False  # left padding: the first queries of sequence 0 see no key at all
    return mask


def test_naive_matches_hand_worked_example():
    # One head, relu features: q = [1, 0], keys [1, 0] and [1, 1], values 2 and 4.
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).view(1, 2, 1, 2)
    k = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).view(1, 2, 1, 2)
    v = torch.tensor([[2.0], [4.0]]).view(1, 2, 1, 1)
    out = naive_linear_attention(q, k, v, causal=True, feature_map="relu", eps=0.0)
    # query 0 sees key 0 only -> 2; query 1: scores 1 and 1 -> (2 + 4) / 2 = 3
    assert out.flatten().tolist() == pytest.approx([2.0, 3.0])
    out = naive_linear_attention(q, k, v, causal=False, feature_map="relu", eps=0.0)
    assert out.flatten().tolist() == pytest.approx([3.0, 3.0])
    # a padded key gets no weight: only key 1 (value 4) is left
    out = naive_linear_attention(q, k, v, key_padding_mask=torch.tensor([[False, True]]), feature_map="relu", eps=0)
    assert out.flatten().tolist() == pytest.approx([4.0, 4.0])


def test_feature_maps_match_their_definitions():
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    expected = {"elu+1": torch.where(x > 0, x + 1, torch.exp(x)), "relu": x.clamp(min=0)}
    assert set(expected) == set(FEATURE_MAPS)
    for name in FEATURE_MAPS:
        torch.testing.assert_close(feature_map(x, name), expected[name])
        xg = x.clone().requires_grad_()
        (autograd,) = torch.autograd.grad(feature_map(xg, name).sum(), xg)
        torch.testing.assert_close(feature_map_grad(x, name), autograd)
    with pytest.raises(ValueError, match=r"unknown feature_map 'tanh'; choose one of \['elu\+1', 'relu'\]"):
        feature_map(x, "tanh")
    with pytest.raises(ValueError, match="unknown feature_map 'tanh'"):
        feature_map_grad(x, "tanh")


def test_every_implementation_shares_one_keyword_only_signature():
    """``f(q, k, v, *, <own tuning keywords>, **options)``: the options are declared once, in utils."""
    implementations = [naive.naive_linear_attention, chunk.chunk_linear_attention, dispatch.linear_attention]
    if utils.triton_available():
        from laart_lab.kernels.linear_attn.triton import triton_linear_attention

        implementations.append(triton_linear_attention)
    for fn in implementations:
        params = list(inspect.signature(fn).parameters.values())
        assert [p.name for p in params[:3]] == ["q", "k", "v"], fn.__name__
        assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params[:3]), fn.__name__
        assert all(p.kind is p.KEYWORD_ONLY for p in params[3:-1]), fn.__name__
        assert params[-1].kind is params[-1].VAR_KEYWORD and params[-1].name == "options", fn.__name__
    # the defaults cover exactly the declared options
    assert set(DEFAULT_OPTIONS) == set(typing.get_type_hints(LinearAttentionOptions))
    assert typing.get_args(typing.get_type_hints(LinearAttentionOptions)["feature_map"]) == FEATURE_MAPS


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("feature", FEATURE_MAPS)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("length,chunk", [(37, 8), (64, 16), (5, 16), (203, 32)])
def test_chunk_matches_naive_fp32(causal, feature, masked, length, chunk):
    q, k, v = _qkv(2, length, length, 3, 8, 5)
    options = dict(causal=causal, key_padding_mask=_mask(2, length) if masked else None, feature_map=feature)
    ref = naive_linear_attention(q, k, v, **options)
    # block_tokens small so that several blocks (state carried block to block) are exercised
    out = chunk_linear_attention(q, k, v, chunk_size=chunk, block_tokens=2 * chunk, **options)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("impl", [i for i in LINEAR_IMPLS if i != "triton"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("tq,tk", [(7, 30), (30, 7), (1, 19)])
def test_unequal_lengths_follow_the_contract(impl, causal, tq, tk):
    """Causal: query i sees keys j <= i + kv_len - q_len (queries aligned with the end of the keys)."""
    q, k, v = _qkv(2, tq, tk, 2, 8, 4)
    mask = torch.ones(2, tk, dtype=torch.bool)
    mask[1, -2:] = False
    # independent reference: the naive form over the full score matrix, masked by hand
    scores = torch.einsum("bqhd,bkhd->bhqk", feature_map(q, "elu+1"), feature_map(k, "elu+1"))
    allowed = torch.ones(tq, tk, dtype=torch.bool).tril(tk - tq) if causal else torch.ones(tq, tk, dtype=torch.bool)
    scores = scores * allowed * mask[:, None, None, :]
    ref = torch.einsum("bhqk,bkhe->bqhe", scores, v) / (scores.sum(-1).transpose(1, 2)[..., None] + 1e-6)
    out = linear_attention(q, k, v, causal=causal, key_padding_mask=mask, impl=impl, chunk_size=8)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    if causal and tq > tk:  # the first tq - tk queries have no key: zeros
        assert out[:, : tq - tk].abs().max() == 0


@pytest.mark.parametrize("dtype,atol", [(torch.bfloat16, 2e-2), (torch.float16, 4e-3)])
@pytest.mark.parametrize("causal", [True, False])
def test_chunk_half_precision_keeps_fp32_states(dtype, atol, causal):
    """Over 3000 tokens a 16-bit running state would drift by far more than one output rounding."""
    q, k, v = _qkv(1, 3000, 3000, 2, 16, 16, dtype=dtype)
    ref = naive_linear_attention(q.double(), k.double(), v.double(), causal=causal)
    out = chunk_linear_attention(q, k, v, causal=causal, chunk_size=64)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), ref, atol=atol, rtol=atol)
    _, den = chunked_forward(q, k, v, None, "elu+1", causal)
    assert den.dtype == torch.float32


def test_chunk_and_block_sizes_do_not_change_the_result():
    q, k, v = _qkv(1, 150, 150, 2, 8, 8)
    outs = [
        chunk_linear_attention(q, k, v, causal=True, chunk_size=c, block_tokens=b)
        for c, b in ((1, 1), (16, 16), (16, 64), (64, 4096), (150, 150))
    ]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("feature", FEATURE_MAPS)
def test_chunk_gradients_match_naive(causal, feature):
    q, k, v = _qkv(2, 45, 45, 2, 8, 6, grad=True)
    options = dict(causal=causal, key_padding_mask=_mask(2, 45), feature_map=feature)
    grad_out = torch.randn(2, 45, 2, 6, generator=torch.Generator().manual_seed(5))
    ref = torch.autograd.grad(naive_linear_attention(q, k, v, **options), (q, k, v), grad_out)
    out = chunk_linear_attention(q, k, v, chunk_size=8, block_tokens=16, **options)
    got = torch.autograd.grad(out, (q, k, v), grad_out)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("feature", FEATURE_MAPS)
def test_chunk_gradcheck_float64(causal, feature):
    q, k, v = _qkv(1, 11, 11, 2, 3, 2, dtype=torch.float64, grad=True)
    if feature == "relu":  # keep inputs away from relu's kink, where finite differences are meaningless
        with torch.no_grad():
            for x in (q, k):
                x.add_(0.1 * torch.sign(x))
    mask = torch.tensor([[False, True, True, True, False, True, True, True, True, True, True]])

    def fn(q, k, v):
        return chunk_linear_attention(
            q, k, v, causal=causal, key_padding_mask=mask, feature_map=feature, chunk_size=3, block_tokens=6
        )

    assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("feature", FEATURE_MAPS)
def test_recurrent_matches_naive_token_by_token(feature):
    q, k, v = _qkv(2, 40, 40, 3, 8, 5)
    ref = naive_linear_attention(q, k, v, causal=True, feature_map=feature)
    state = LinearRecurrentState(feature_map=feature)
    for t in range(40):
        step = state.step(q[:, t : t + 1], k[:, t : t + 1], v[:, t : t + 1])
        torch.testing.assert_close(step, ref[:, t : t + 1], atol=1e-5, rtol=1e-5)
    # O(1) state: fixed-size tensors, whatever the number of tokens consumed
    assert state.state is not None and tuple(state.state.shape) == (2, 3, 8, 5)
    assert state.state.dtype == torch.float32 and state.tokens_seen == 40
    assert state.recurrent  # the declared contract generation relies on


def test_recurrent_consumes_several_tokens_per_step():
    q, k, v = _qkv(1, 12, 12, 2, 4, 3)
    state = LinearRecurrentState(feature_map="relu")
    out = torch.cat([state.step(q[:, :5], k[:, :5], v[:, :5]), state.step(q[:, 5:], k[:, 5:], v[:, 5:])], 1)
    torch.testing.assert_close(out, naive_linear_attention(q, k, v, causal=True, feature_map="relu"))


def test_errors_name_the_bad_option_and_the_choices():
    q, k, v = _qkv(1, 4, 4, 1, 4, 4)
    with pytest.raises(ValueError, match="impl='triton' runs on CUDA tensors"):
        linear_attention(q, k, v, impl="triton")
    with pytest.raises(ValueError, match=r"unknown impl 'fast'; choose one of \['auto', 'chunked', 'triton'"):
        linear_attention(q, k, v, impl="fast")
    for fn in (linear_attention, naive_linear_attention, chunk_linear_attention):
        with pytest.raises(ValueError, match="unknown feature_map 'tanh'"):
            fn(q, k, v, feature_map="tanh")
        with pytest.raises(ValueError, match="eps must be >= 0"):
            fn(q, k, v, eps=-1.0)
        with pytest.raises(TypeError, match=r"unknown option\(s\) \['feature'\]; accepted: \['causal'"):
            fn(q, k, v, feature="relu")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="chunk_size must be a positive"):
        chunk_linear_attention(q, k, v, chunk_size=0)
    with pytest.raises(ValueError, match="laid out"):
        linear_attention(q[0], k, v)
    with pytest.raises(ValueError, match="unknown feature_map"):
        LinearRecurrentState(feature_map="tanh")  # type: ignore[arg-type]


def test_auto_picks_chunked_on_cpu_and_triton_on_cuda():
    assert resolve_linear_impl("auto", torch.device("cpu")) == "chunked"
    assert resolve_linear_impl("auto", torch.device("cuda"), torch.float64) == "chunked"  # no fp64 kernels
    pytest.importorskip("triton")
    assert resolve_linear_impl("auto", torch.device("cuda"), torch.bfloat16) == "triton"
