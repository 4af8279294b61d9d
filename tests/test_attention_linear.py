"""The ``linear`` backend, and selecting either backend by registered name."""

from __future__ import annotations

import typing

import pytest
import torch
from jsonargparse import ArgumentParser

from laart_lab import component_names
from laart_lab.attention import LinearAttention, SoftmaxAttention
from laart_lab.components.attention import AttentionFactory
from laart_lab.kernels import FEATURE_MAPS, LINEAR_IMPLS
from laart_lab.kernels.linear_attn.naive import naive_linear_attention
from laart_lab.registry import get_registry


def _qkv(t=21, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(2, t, 4, 8, generator=gen) for _ in range(3))


def test_zero_arg_construction_and_defaults():
    backend = LinearAttention()
    assert (backend.feature_map, backend.impl, backend.chunk_size, backend.eps) == ("elu+1", "auto", 64, 1e-6)
    q, k, v = _qkv()
    torch.testing.assert_close(backend(q, k, v, causal=True), naive_linear_attention(q, k, v, causal=True))


@pytest.mark.parametrize("impl", [i for i in LINEAR_IMPLS if i != "triton"])  # triton: test_kernels_triton.py
@pytest.mark.parametrize("feature_map", FEATURE_MAPS)
def test_every_cpu_impl_matches_naive(impl, feature_map):
    q, k, v = _qkv()
    mask = torch.rand(2, 21, generator=torch.Generator().manual_seed(3)) > 0.2
    backend = LinearAttention(feature_map=feature_map, impl=impl, chunk_size=8)
    for causal in (False, True):
        ref = naive_linear_attention(q, k, v, causal=causal, key_padding_mask=mask, feature_map=feature_map)
        torch.testing.assert_close(backend(q, k, v, causal, mask), ref, atol=2e-5, rtol=1e-4)


def test_decoding_state_is_recurrent_and_matches_forward():
    q, k, v = _qkv()
    backend = LinearAttention(chunk_size=8)
    full = backend(q, k, v, causal=True)
    state = backend.decoding_state()
    outs = [state.step(q[:, t : t + 1], k[:, t : t + 1], v[:, t : t + 1]) for t in range(21)]
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=1e-5)
    assert state.state.shape == (2, 4, 8, 8)  # fixed size: O(1) per token
    assert state.recurrent  # declared, so generation never restarts it at a window


def test_options_are_the_kernels_literals():
    """The recipe-facing annotations are the kernels' Literal types: one source of truth for the choices."""
    hints = typing.get_type_hints(LinearAttention.__init__)
    assert typing.get_args(hints["feature_map"]) == FEATURE_MAPS
    assert typing.get_args(hints["impl"]) == LINEAR_IMPLS


def test_attention_weights_reproduce_the_output():
    q, k, v = _qkv(t=9)
    backend = LinearAttention()
    for causal in (False, True):
        weights = backend.attention_weights(q, k, causal)
        assert weights.shape == (2, 4, 9, 9) and (weights >= 0).all()
        torch.testing.assert_close(
            torch.einsum("bhqk,bkhe->bqhe", weights, v), backend(q, k, v, causal), atol=1e-5, rtol=1e-5
        )
    assert torch.all(backend.attention_weights(q, k, causal=True).triu(1) == 0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"feature_map": "tanh"}, "feature_map"),
        ({"impl": "cuda"}, r"unknown impl 'cuda'; choose one of \['auto', 'chunked', 'triton', 'reference'\]"),
        ({"feature_map": "tanh"}, r"unknown feature_map 'tanh'; choose one of \['elu\+1', 'relu'\]"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"impl": "triton", "chunk_size": 48}, "power of two"),
        ({"eps": -1.0}, "eps"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LinearAttention(**kwargs)


@pytest.mark.parametrize("name,cls", [("softmax", SoftmaxAttention), ("linear", LinearAttention)])
def test_registry_provides_both_backends(name, cls):
    entry = get_registry().get("attention", name)
    assert entry.cls is cls
    backend = entry.cls()  # models call the factory with no arguments
    q, k, v = _qkv()
    assert backend(q, k, v, causal=True).shape == (2, 21, 4, 8)


@pytest.mark.parametrize(
    "spec,expected",
    [
        ({"class_path": "softmax", "init_args": {"impl": "sdpa"}}, SoftmaxAttention(impl="sdpa")),
        ({"class_path": "linear", "init_args": {"feature_map": "relu", "chunk_size": 32}},
         LinearAttention(feature_map="relu", chunk_size=32)),
    ],
)  # fmt: skip
def test_recipe_selects_backend_by_registered_name(spec, expected):
    """A recipe's ``attention: {class_path: <registered name>, init_args: ...}`` builds the backend."""
    component_names.install()
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--attention", type=AttentionFactory)
    config = parser.parse_object({"attention": spec})
    backend = parser.instantiate(config).attention()
    assert type(backend) is type(expected) and repr(backend) == repr(expected)


def test_recipe_rejects_a_bad_init_arg():
    component_names.install()
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--attention", type=AttentionFactory)
    with pytest.raises(Exception, match="feature_map"):
        parser.parse_object({"attention": {"class_path": "linear", "init_args": {"feature_map": "tanh"}}})
