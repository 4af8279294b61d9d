"""CharLM and the transformer stack: incremental == parallel, memory slot, optimiser groups, schedule."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import Tensor

from laart_lab.components.attention import AttentionBackend, DecodingState
from laart_lab.components.memory import MemoryModule
from laart_lab.models.charlm import CharLM, component_spec, resolve_component
from laart_lab.models.transformer import TransformerStack
from laart_lab.plugins.attention import SoftmaxAttention
from laart_lab.registry import get_registry


class _RecurrentState(DecodingState):
    recurrent = True  # fixed-size state: generation need not restart it

    def __init__(self) -> None:
        self.s: Tensor | None = None
        self.z: Tensor | None = None

    def step(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        fq, fk = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
        kv = torch.einsum("bthd,bthe->bhde", fk, v)
        self.s = kv if self.s is None else self.s + kv
        self.z = fk[:, 0] if self.z is None else self.z + fk[:, 0]
        num = torch.einsum("bthd,bhde->bthe", fq, self.s)
        den = torch.einsum("bthd,bhd->bth", fq, self.z)[..., None]
        return num / den


class ReferenceLinear(AttentionBackend):
    """Naive causal linear attention (elu+1) with an O(1) recurrent state: an independent reference."""

    def forward(self, q, k, v, causal=False, key_padding_mask=None):
        fq, fk = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
        scores = torch.einsum("bqhd,bkhd->bhqk", fq, fk)
        if causal:
            scores = scores * torch.ones(q.shape[1], k.shape[1]).tril(k.shape[1] - q.shape[1])
        weights = scores / scores.sum(-1, keepdim=True)
        return torch.einsum("bhqk,bkhd->bqhd", weights, v)

    def decoding_state(self) -> DecodingState:
        return _RecurrentState()


def _backends() -> list:
    backends = [pytest.param(SoftmaxAttention, id="softmax"), pytest.param(ReferenceLinear, id="reference-linear")]
    entry = get_registry().find("attention", "linear")
    if entry is not None:
        backends.append(pytest.param(entry.cls, id="registered-linear"))
    return backends


def tiny_model(attention=SoftmaxAttention, **kwargs) -> CharLM:
    torch.manual_seed(0)
    defaults = dict(vocabulary="abcdefgh\n ", d_model=32, n_layers=2, n_heads=4, warmup_steps=2, lr_decay_steps=10)
    defaults.update(kwargs)
    return CharLM(attention=attention, **defaults).eval()


@pytest.mark.parametrize("attention", _backends())
@pytest.mark.parametrize("position", ["rotary", "learned"])
def test_incremental_decoding_matches_parallel_forward(attention, position: str) -> None:
    """The next-token distribution from the decoding state equals the parallel model's at every position."""
    model = tiny_model(attention, position=position, mlp="swiglu")
    tokens = torch.randint(0, 10, (1, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        parallel = torch.log_softmax(model(tokens)[0], dim=-1)
        cache = model.stack.init_decoding()
        stepped = torch.stack([torch.log_softmax(model._step_logits(int(t), cache), -1) for t in tokens[0]])
    torch.testing.assert_close(stepped, parallel, atol=1e-5, rtol=1e-4)


def test_recurrent_generation_equals_parallel_sampling() -> None:
    """Greedy generation through the O(1) state picks what the parallel model's argmax picks."""
    model = tiny_model(ReferenceLinear)
    prompt = [1, 2, 3]
    generated = list(model.generate_ids(prompt, 12, temperature=0.0))
    sequence = list(prompt)
    with torch.no_grad():
        for _ in range(12):
            sequence.append(int(model(torch.tensor([sequence]))[0, -1].argmax()))
    assert generated == sequence[len(prompt) :]


class _OwnCache(DecodingState):
    """A third-party key/value cache (not CachedKeysDecodingState) that declares nothing: not recurrent."""

    def __init__(self, backend: AttentionBackend) -> None:
        self.backend, self.keys, self.values = backend, [], []

    def step(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        self.keys.append(k)
        self.values.append(v)
        return self.backend(q, torch.cat(self.keys, 1), torch.cat(self.values, 1), causal=True)


class OwnCacheSoftmax(SoftmaxAttention):
    def decoding_state(self) -> DecodingState:
        return _OwnCache(self)


@pytest.mark.parametrize("attention,recurrent", [(SoftmaxAttention, False), (OwnCacheSoftmax, False),
                                                 (ReferenceLinear, True)])  # fmt: skip
def test_generation_restarts_only_non_recurrent_states(attention, recurrent: bool) -> None:
    """A window restart re-reads the last window // 2 tokens: counted through the cache's position."""
    model = tiny_model(attention, block_size=8)
    assert model.stack.init_decoding().recurrent is recurrent
    positions = []
    original = model._step_logits

    def spy(token, cache):
        positions.append(cache.position)
        return original(token, cache)

    model._step_logits = spy
    list(model.generate_ids([1, 2], 12, temperature=0.0))
    assert (max(positions) < 8) is not recurrent  # a non-recurrent cache never grows past the window


def test_softmax_window_restarts_keep_positions_in_range() -> None:
    model = tiny_model(position="learned", max_len=16, block_size=16)
    out = list(model.generate_ids([1], 40, temperature=1.0, generator=torch.Generator().manual_seed(0)))
    assert len(out) == 40 and all(0 <= t < 10 for t in out)  # positions never exceed max_len


class RecordingMemory(MemoryModule):
    """Counts its hooks, shifts hidden states by a learned bias, and returns an auxiliary loss."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(d_model))
        self.calls: dict[str, int] = {"mix": 0, "hidden": 0}
        self.resets: list[Tensor | None] = []
        self.shapes: list[tuple[int, ...]] = []

    def mix_attention(self, q, k, v, local_out):
        self.calls["mix"] += 1
        self.shapes.append(tuple(q.shape))
        return local_out

    def transform_hidden(self, hidden):
        self.calls["hidden"] += 1
        return hidden + self.bias

    def reset(self, streams=None):
        self.resets.append(streams)

    def auxiliary_loss(self):
        return self.bias.pow(2).sum() + 1.0


def test_memory_slot_hooks_reset_and_auxiliary_loss() -> None:
    model = tiny_model(memory=RecordingMemory, memory_layer=0).train()
    memory = model.memory
    assert isinstance(memory, RecordingMemory) and model.stack.blocks[0].memory is memory
    assert model.stack.blocks[1].memory is None
    batch = {
        "input": torch.randint(0, 10, (2, 8)),
        "target": torch.randint(0, 10, (2, 8)),
        "stream_start": torch.tensor([True, False]),
    }
    total, lm = model._loss(batch)
    assert memory.calls == {"mix": 1, "hidden": 1}
    assert memory.shapes == [(2, 8, 4, 8)]  # per-head [batch, seq, heads, head_dim]
    assert torch.equal(memory.resets[-1], torch.tensor([True, False]))
    torch.testing.assert_close(total - lm, torch.tensor(1.0))
    assert any(name.startswith("stack.memory.") for name in model.state_dict())  # memory state is checkpointed


def test_param_groups_decay_only_matrices() -> None:
    model = tiny_model(bias=True, norm="layernorm")
    decay, no_decay = model.param_groups()
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decayed and all(n.endswith("weight") and "norm" not in n and "embed" not in n for n in decayed)
    assert "embed.weight" in {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == model.hparams.weight_decay and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_lr_schedule_warmup_then_cosine_to_floor() -> None:
    model = tiny_model(warmup_steps=4, lr_decay_steps=104, min_lr_ratio=0.1)
    assert model.lr_factor(0) == pytest.approx(0.25)
    assert model.lr_factor(3) == pytest.approx(1.0)
    assert model.lr_factor(54) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert model.lr_factor(104) == pytest.approx(0.1) and model.lr_factor(500) == pytest.approx(0.1)


def test_time_schedule_follows_whichever_budget_is_further_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    """``lr_schedule: time``: half the Trainer's max_time gone = half-way down the cosine, even at step 10 of 1000."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import Timer

    model = tiny_model(warmup_steps=4, lr_decay_steps=1004, min_lr_ratio=0.1, lr_schedule="time")
    trainer = Trainer(max_time={"seconds": 100}, logger=False, enable_checkpointing=False, accelerator="cpu")
    model.trainer = trainer
    timer = next(cb for cb in trainer.callbacks if isinstance(cb, Timer))
    elapsed = {"seconds": 50.0}
    monkeypatch.setattr(timer, "time_elapsed", lambda stage="train": elapsed["seconds"])
    assert model.lr_factor(0) == pytest.approx(0.25)  # warmup stays step-based
    assert model.lr_factor(10) == pytest.approx(0.1 + 0.9 * 0.5)
    assert model.lr_factor(1004) == pytest.approx(0.1)  # the step budget can still end it first
    elapsed["seconds"] = 100.0
    assert model.lr_factor(10) == pytest.approx(0.1)


def test_time_schedule_without_max_time_is_a_clear_error() -> None:
    from lightning.pytorch import Trainer

    model = tiny_model(lr_schedule="time")
    model.trainer = Trainer(max_steps=5, logger=False, enable_checkpointing=False, accelerator="cpu")
    with pytest.raises(ValueError, match="trainer.max_time"):
        model.configure_optimizers()


def test_hparams_are_plain_data_and_components_round_trip() -> None:
    model = tiny_model(functools.partial(ReferenceLinear), memory=RecordingMemory)
    spec = model.hparams["attention"]
    assert spec == {"class_path": f"{__name__}.ReferenceLinear", "init_args": {}}
    assert component_spec(SoftmaxAttention, "attention")["class_path"] == "softmax"  # registered name preferred
    rebuilt = resolve_component({"class_path": "softmax"}, "attention")()
    assert isinstance(rebuilt, SoftmaxAttention)
    for value in model.hparams.values():
        assert isinstance(value, (str, int, float, bool, list, tuple, dict, type(None)))


def test_missing_vocab_size_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        CharLM()
    with pytest.raises(ValueError, match="divisible"):
        TransformerStack(30, 1, 4, SoftmaxAttention)


def test_tied_embeddings_and_init_scale() -> None:
    model = tiny_model()
    logits = model(torch.tensor([[0, 1]]))
    hidden = model.stack(model.embed(torch.tensor([[0, 1]])))
    torch.testing.assert_close(logits, hidden @ model.embed.weight.T)
    assert abs(model.stack.blocks[0].mlp.down.weight.std().item() - 0.02 / math.sqrt(4)) < 0.004


@pytest.mark.parametrize("name", ["softmax", "linear"])
def test_attention_maps_are_causal_normalised_weights(name: str) -> None:
    from laart_lab.callbacks.attention_maps import draw, snippet_attention

    model = tiny_model(get_registry().get("attention", name).cls)
    tokens = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    maps = snippet_attention(model.stack, model.embed(tokens))
    assert len(maps) == 2
    for weights in maps:
        assert weights is not None and weights.shape == (4, 8, 8)
        torch.testing.assert_close(weights.sum(-1), torch.ones(4, 8), atol=1e-4, rtol=0)
        assert torch.all(weights.triu(1) == 0)  # nothing attends to the future
    draw(maps, list("abcdefgh"), max_heads=2)


def test_stack_attention_maps_follow_each_block_input() -> None:
    """Layer i's map is computed on what block i receives: checked against running the blocks by hand."""
    model = tiny_model(position="learned")
    embedded = model.embed(torch.tensor([[1, 2, 3, 4, 5, 6]]))
    with torch.no_grad():
        maps = model.stack.attention_maps(embedded)
        h = embedded + model.stack.pos_emb(torch.arange(6))
        for block, got in zip(model.stack.blocks, maps):
            q, k, _, _, _ = block.attn.project(block.norm1(h))
            scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
            expected = torch.softmax(scores.masked_fill(torch.ones(6, 6).triu(1).bool(), float("-inf")), -1)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
            h = block(h)


def test_score_mask_logs_accuracy_on_scored_positions_only() -> None:
    model = tiny_model()
    tokens = torch.randint(0, 10, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        predicted = model(tokens).argmax(-1)
    target = predicted.clone()
    target[0, 1] = (target[0, 1] + 1) % 10  # one wrong prediction among the scored positions
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, :2] = mask[1, 5] = True
    model.log = lambda *args, **kwargs: None  # outside a Trainer
    with torch.no_grad():
        model._eval_step({"input": tokens, "target": target, "score_mask": mask}, "val")
    assert model.metrics["val_acc"].compute().item() == pytest.approx(2 / 3)
