"""KVMemory: retrieval against a naive reference, FIFO eviction, clearing rules, checkpoints, and in a model."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from laart_lab.memory.kv_memory import KVMemory
from laart_lab.models.charlm import CharLM
from laart_lab.models.transformer import TransformerStack
from laart_lab.plugins.attention import SoftmaxAttention


def naive_read(q: torch.Tensor, keys: list[torch.Tensor], values: list[torch.Tensor], top_k: int) -> torch.Tensor:
    """Reference: per stream, head and query, softmax over the top-k stored scores, loops only."""
    b, t, h, d = q.shape
    out = torch.zeros_like(q)
    for s in range(b):
        if len(keys[s]) == 0:
            continue
        for head in range(h):
            for i in range(t):
                scores = torch.stack([q[s, i, head] @ key[head] / math.sqrt(d) for key in keys[s]])
                top, index = scores.topk(min(top_k, len(scores)))
                weights = torch.softmax(top, dim=0)
                out[s, i, head] = sum(w * values[s][j][head] for w, j in zip(weights, index.tolist()))
    return out


def qkv(b: int, t: int, h: int = 2, d: int = 4, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, t, h, d, generator=g) for _ in range(4)]


def test_first_window_is_local_attention_and_later_windows_match_naive_reference() -> None:
    memory = KVMemory(8, 2, capacity=16, top_k=3, gate_init=0.7)
    q1, k1, v1, local1 = qkv(2, 5, seed=1)
    assert torch.equal(memory.mix_attention(q1, k1, v1, local1), local1)  # nothing stored yet
    q2, k2, v2, local2 = qkv(2, 5, seed=2)
    out = memory.mix_attention(q2, k2, v2, local2)
    read = naive_read(q2, [list(k1[s]) for s in range(2)], [list(v1[s]) for s in range(2)], top_k=3)
    gate = torch.sigmoid(torch.tensor(0.7))
    torch.testing.assert_close(out, gate * read + (1 - gate) * local2)
    assert memory.stored().tolist() == [10, 10]


def test_fifo_eviction_keeps_the_newest_capacity_entries() -> None:
    memory = KVMemory(8, 2, capacity=5, top_k=5)
    windows = [qkv(1, 3, seed=s) for s in range(3)]
    for q, k, v, local in windows:
        memory.mix_attention(q, k, v, local)
    all_keys = torch.cat([w[1] for w in windows], dim=1)[0]  # 9 keys in time order
    assert memory.stored().tolist() == [5]
    stored = {tuple(row.flatten().tolist()) for row in memory.store.keys[0]}
    assert stored == {tuple(row.flatten().tolist()) for row in all_keys[-5:]}
    # a query reads exactly the five newest entries (top_k = capacity)
    q, k, v, local = qkv(1, 2, seed=9)
    out = memory.mix_attention(q, k, v, local)
    all_values = torch.cat([w[2] for w in windows], dim=1)[0]
    read = naive_read(q, [list(all_keys[-5:])], [list(all_values[-5:])], top_k=5)
    torch.testing.assert_close(out, 0.5 * read + 0.5 * local)


def test_window_longer_than_capacity_keeps_its_tail() -> None:
    memory = KVMemory(8, 2, capacity=4, top_k=4)
    q, k, v, local = qkv(1, 7)
    memory.mix_attention(q, k, v, local)
    stored = {tuple(row.flatten().tolist()) for row in memory.store.keys[0]}
    assert stored == {tuple(row.flatten().tolist()) for row in k[0, -4:]}


def test_reset_clears_only_the_flagged_streams() -> None:
    memory = KVMemory(8, 2, capacity=8, top_k=2)
    q, k, v, local = qkv(3, 4)
    memory.mix_attention(q, k, v, local)
    memory.reset(torch.tensor([False, True, False]))
    assert memory.stored().tolist() == [4, 0, 4]
    q2, k2, v2, local2 = qkv(3, 4, seed=5)
    out = memory.mix_attention(q2, k2, v2, local2)
    assert torch.equal(out[1], local2[1])  # the cleared stream reads nothing
    assert not torch.equal(out[0], local2[0])


def test_memory_is_detached_and_gradients_reach_queries_and_gate() -> None:
    memory = KVMemory(8, 2, capacity=8, top_k=2)
    q, k, v, local = (x.requires_grad_() for x in qkv(1, 3))
    memory.mix_attention(q, k, v, local)
    assert not memory.store.keys.requires_grad and not memory.store.values.requires_grad
    q2 = torch.randn(1, 3, 2, 4, requires_grad=True)
    memory.mix_attention(q2, k.detach(), v.detach(), local.detach()).sum().backward()
    assert q2.grad is not None and q2.grad.abs().sum() > 0
    assert memory.gate.grad is not None and memory.gate.grad.abs().sum() > 0
    assert k.grad is None and v.grad is None  # stored keys/values carry no graph back to their window


def test_train_eval_switch_and_batch_size_change_clear_the_memory() -> None:
    memory = KVMemory(8, 2, capacity=8, top_k=2)
    memory.train()
    memory.mix_attention(*qkv(2, 3))
    memory.eval()
    q, k, v, local = qkv(2, 3, seed=3)
    assert torch.equal(memory.mix_attention(q, k, v, local), local)  # training memory not carried into eval
    memory.mix_attention(*qkv(2, 3, seed=4))
    assert memory.stored().tolist() == [6, 6]
    memory.train()
    assert torch.equal(memory.mix_attention(q, k, v, local), local)  # nor eval memory into training
    q3, k3, v3, local3 = qkv(3, 3, seed=6)
    assert torch.equal(memory.mix_attention(q3, k3, v3, local3), local3)  # other streams: start afresh


def test_state_dict_round_trip_with_weights_only(tmp_path) -> None:
    memory = KVMemory(8, 2, capacity=6, top_k=2)
    for seed in range(3):
        memory.mix_attention(*qkv(2, 3, seed=seed))
    torch.save(memory.state_dict(), tmp_path / "m.pt")
    restored = KVMemory(8, 2, capacity=6, top_k=2)
    restored.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    q, k, v, local = qkv(2, 3, seed=7)
    torch.testing.assert_close(restored.mix_attention(q, k, v, local), memory.mix_attention(q, k, v, local))
    with pytest.raises(ValueError, match="same capacity"):
        KVMemory(8, 2, capacity=5).load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))


def stack_with_memory(seed: int = 0) -> TransformerStack:
    torch.manual_seed(seed)
    return TransformerStack(16, 2, 2, SoftmaxAttention, memory=functools.partial(KVMemory, capacity=32, top_k=4))


def test_in_a_model_a_document_boundary_forgets_the_previous_document() -> None:
    model, fresh = stack_with_memory(), stack_with_memory()
    fresh.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(0)
    doc_a, doc_b = torch.randn(2, 8, 16, generator=g), torch.randn(2, 8, 16, generator=g)
    model(doc_a)
    with_memory = model(doc_b)  # continues stream 0 and 1 with doc_a in memory
    model.reset_memory(torch.tensor([True, False]))  # stream 0 starts a new document
    after_boundary = model(doc_b)
    reference = fresh(doc_b)  # a model that never saw doc_a
    torch.testing.assert_close(after_boundary[0], reference[0])
    assert not torch.allclose(after_boundary[1], reference[1])  # stream 1 still remembers
    assert not torch.allclose(with_memory[0], reference[0])


def test_in_a_model_evaluation_does_not_see_training_memory() -> None:
    model, fresh = stack_with_memory(), stack_with_memory()
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(2, 8, 16)
    model.train()
    for _ in range(3):
        model(torch.randn(2, 8, 16))
    model.eval()
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), fresh(x))


def test_bad_shapes_and_arguments_are_reported() -> None:
    with pytest.raises(ValueError, match="divisible"):
        KVMemory(10, 3)
    with pytest.raises(ValueError, match="capacity and top_k"):
        KVMemory(8, 2, capacity=0)
    with pytest.raises(ValueError, match="expects q/k/v"):
        KVMemory(8, 2).mix_attention(*qkv(1, 3, h=4, d=2))


def test_a_resumed_model_continues_with_the_memory_it_had(tmp_path) -> None:
    spec = {"class_path": "kv_memory", "init_args": {"capacity": 32, "top_k": 4}}
    torch.manual_seed(0)
    model = CharLM(vocab_size=20, block_size=8, d_model=16, n_layers=2, n_heads=2, memory=spec)
    windows = torch.randint(0, 20, (3, 2, 8))
    model.train()
    with torch.no_grad():
        model(windows[0])
        model(windows[1])
    torch.save(model.state_dict(), tmp_path / "state.pt")
    resumed = CharLM(vocab_size=20, block_size=8, d_model=16, n_layers=2, n_heads=2, memory=spec)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    resumed.train()
    assert resumed.memory.stored().tolist() == [16, 16]
    with torch.no_grad():
        torch.testing.assert_close(resumed(windows[2]), model(windows[2]))


def test_value_shift_pairs_each_key_with_the_next_value() -> None:
    memory = KVMemory(8, 2, capacity=16, top_k=16, value_shift=1)
    q1, k1, v1, local1 = qkv(1, 5, seed=1)
    memory.mix_attention(q1, k1, v1, local1)
    assert memory.stored().tolist() == [4]  # the last key has no next value inside the window
    q2, k2, v2, local2 = qkv(1, 3, seed=2)
    out = memory.mix_attention(q2, k2, v2, local2)
    read = naive_read(q2, [list(k1[0, :-1])], [list(v1[0, 1:])], top_k=16)
    torch.testing.assert_close(out, 0.5 * read + 0.5 * local2)
