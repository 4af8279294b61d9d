"""ConceptLayer and the ConceptGrowth callback: function-preserving growth, optimizer state, consolidation,
statistics, logging and a checkpoint round trip of a grown model in a fresh process."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from laart_lab.callbacks.concept_growth import ConceptGrowth, reset_optimizer_rows
from laart_lab.data.recall import RecallDataModule
from laart_lab.memory.concept_growth import ConceptLayer, spherical_kmeans
from laart_lab.models.charlm import CharLM
from tests.conftest import REPO_ROOT


def tiny_lm(seed: int = 0, **concepts) -> CharLM:
    torch.manual_seed(seed)
    spec = {"class_path": "concept_growth", "init_args": {"capacity": 16, "initial": 2, **concepts}}
    return CharLM(vocab_size=40, block_size=16, d_model=32, n_layers=2, n_heads=2, memory=spec, warmup_steps=1, lr=1e-2)


def batch(seed: int = 0, b: int = 4, t: int = 16) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 40, (b, t + 1), generator=g)
    return {"input": tokens[:, :-1], "target": tokens[:, 1:]}


# ----------------------------------------------------------------------------- the layer
def test_inactive_rows_do_not_touch_the_output_and_get_zero_gradient() -> None:
    layer = ConceptLayer(8, capacity=6, initial=2)
    with torch.no_grad():
        layer.values.normal_()
    h = torch.randn(3, 5, 8)
    out = layer.transform_hidden(h)
    weights = torch.sigmoid(layer.scale * F.cosine_similarity(h[..., None, :], layer.concepts, dim=-1) + layer.bias)
    expected = h + weights[..., :2] @ layer.values[:2]  # naive: only the two active concepts
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert layer.values.grad[2:].abs().sum() == 0 and layer.concepts.grad[2:].abs().sum() == 0
    assert layer.values.grad[:2].abs().sum() > 0


def test_novelty_rate_and_usage_follow_their_definitions() -> None:
    layer = ConceptLayer(4, capacity=4, initial=2, novelty_threshold=0.5, per_batch=10)
    with torch.no_grad():
        layer.concepts[:2] = torch.eye(4)[:2]
    # cosines to concept 0 / 1: (1, 0), (0.8, 0.6), (0, 1), (0.3, 0.2)->novel, (0, 0)->novel
    h = torch.tensor([[1.0, 0, 0, 0], [0.8, 0.6, 0, 0], [0, 1.0, 0, 0], [0.3, 0.2, 0.933, 0], [0, 0, 0, 1.0]])
    layer.train()
    layer.transform_hidden(h[None])
    assert layer.novelty_rate() == pytest.approx(2 / 5)
    assert layer.usage_share()[:2].tolist() == pytest.approx([2 / 5, 1 / 5])  # explained: best and not novel
    torch.testing.assert_close(layer.poorly_explained(), F.normalize(h[3:], dim=-1))
    layer.eval()
    layer.transform_hidden(h[None])  # evaluation is not counted
    assert float(layer.seen) == 5


def test_spherical_kmeans_recovers_separated_clusters_deterministically() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(6)[:3]
    points = torch.cat([c + 0.05 * torch.randn(20, 6, generator=g) for c in centres])
    found = spherical_kmeans(points, 3)
    assert torch.equal(found, spherical_kmeans(points, 3))
    similarity = found @ centres.T
    assert sorted(similarity.argmax(dim=1).tolist()) == [0, 1, 2]
    assert similarity.max(dim=1).values.min() > 0.99


def test_consolidation_merges_duplicates_and_retires_unused() -> None:
    layer = ConceptLayer(4, capacity=6, initial=4)
    with torch.no_grad():
        layer.concepts[:4] = torch.tensor([[1.0, 0, 0, 0], [0.99, 0.05, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
        layer.values[:4] = torch.arange(16.0).view(4, 4)
    usage = torch.tensor([0.5, 0.3, 0.2, 0.0, 0.0, 0.0])
    before = layer.values[:2].sum(dim=0).clone()
    result = layer.consolidate(usage, merge_threshold=0.95, retire_below=0.0)
    assert (result.merges, result.retired) == (1, 1)
    assert layer.active.tolist() == [True, False, True, False, False, False]
    torch.testing.assert_close(layer.values[0], before)  # the kept concept carries both values
    assert sorted(result.changed.tolist()) == [0, 1, 3]
    # freshly grown concepts are not retired in their first period
    rows = layer.grow(torch.eye(4)[3:], max_new=1)
    assert layer.consolidate(torch.zeros(6), retire_below=0.0, merge_threshold=0.99).retired == 2  # rows 0 and 2
    assert layer.active.nonzero().flatten().tolist() == rows.tolist()


# ----------------------------------------------------------------------------- growth keeps training correct
def test_growth_keeps_the_function_before_the_first_update() -> None:
    model = tiny_lm()
    data = batch()
    model.train()
    model._loss(data)  # gather poorly explained states
    layer = model.memory
    model.eval()
    with torch.no_grad():
        before = model(data["input"])
    rows = layer.grow(layer.poorly_explained(), max_new=4)
    assert rows.numel() == 4 and layer.num_active == 6
    with torch.no_grad():
        after = model(data["input"])
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)


def test_optimizer_state_survives_growth_and_new_concepts_get_gradients() -> None:
    model = tiny_lm()
    layer = model.memory
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for seed in range(3):
        loss, _ = model._loss(batch(seed))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    state_before = {name: tensor.clone() for name, tensor in optimizer.state[layer.values].items()}
    other = next(p for p in model.parameters() if p is not layer.values and p is not layer.concepts)
    other_before = optimizer.state[other]["exp_avg"].clone()
    old = layer.active.clone()
    rows = layer.grow(layer.poorly_explained(), max_new=3)

    class _Trainer:  # what reset_optimizer_rows reads from a Trainer
        optimizers = [optimizer]

    reset_optimizer_rows(_Trainer(), layer, rows)  # type: ignore[arg-type]
    state = optimizer.state[layer.values]
    assert optimizer.state[layer.values] is not None and len(optimizer.param_groups[0]["params"]) > 0
    torch.testing.assert_close(state["exp_avg"][old], state_before["exp_avg"][old])
    torch.testing.assert_close(state["exp_avg_sq"][old], state_before["exp_avg_sq"][old])
    assert torch.equal(optimizer.state[other]["exp_avg"], other_before)
    assert state["exp_avg"][rows].abs().sum() == 0  # a new concept starts without inherited momentum
    loss, _ = model._loss(batch(9))
    optimizer.zero_grad()
    loss.backward()
    assert (layer.values.grad[rows].abs().sum(dim=1) > 0).all()
    values_before = layer.values[rows].detach().clone()
    optimizer.step()
    assert not torch.equal(layer.values[rows], values_before)  # the new concepts train


def recall_data() -> RecallDataModule:
    return RecallDataModule(
        block_size=16, pairs=4, queries_per_window=3, batch_size=4, train_batches=12, val_batches=2, test_batches=2
    )


def fit_with_growth(tmp_path: Path, max_steps: int = 12, **callback) -> tuple[Trainer, CharLM, ConceptGrowth]:
    model = tiny_lm(novelty_threshold=0.9)
    growth = ConceptGrowth(grow_every=3, think_every=6, max_new=2, min_novelty=0.0, **callback)
    trainer = Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=TensorBoardLogger(tmp_path, name="concepts"),
        callbacks=[growth],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        default_root_dir=tmp_path,
        log_every_n_steps=1,
    )
    trainer.fit(model, recall_data())
    return trainer, model, growth


@pytest.mark.slow
def test_callback_grows_consolidates_and_logs_to_tensorboard(tmp_path: Path) -> None:
    trainer, model, growth = fit_with_growth(tmp_path)
    assert growth.counters["growth_checks"] == 4 and growth.counters["thinking_phases"] == 2
    assert (
        model.memory.num_active == 2 + growth.counters["grown"] - growth.counters["merges"] - growth.counters["retired"]
    )
    assert growth.counters["grown"] > 0
    events = EventAccumulator(trainer.logger.log_dir)
    events.Reload()
    assert {"concepts/count", "concepts/novelty_rate", "concepts/grown", "concepts/merges", "concepts/retired"} <= set(
        events.Tags()["scalars"]
    )
    assert "concepts/usage" in events.Tags()["histograms"]
    assert [e.step for e in events.Scalars("concepts/novelty_rate")] == [3, 6, 9, 12]  # every check, at its step
    assert [e.step for e in events.Scalars("concepts/merges")] == [6, 12]
    assert events.Scalars("concepts/count")[-1].value == model.memory.num_active


CHECK_SCRIPT = """
import json, sys, torch
from laart_lab.models.charlm import CharLM
path, expected_path = sys.argv[1], sys.argv[2]
checkpoint = torch.load(path, weights_only=True)
model = CharLM.load_from_checkpoint(path, weights_only=True)
model.eval()
expected = torch.load(expected_path, weights_only=True)
with torch.no_grad():
    logits = model(expected["input"])
print(json.dumps({
    "active": model.memory.active.tolist(),
    "concepts_equal": bool(torch.equal(model.memory.concepts, expected["concepts"])),
    "max_logit_diff": float((logits - expected["logits"]).abs().max()),
    "callback_state": [v for k, v in checkpoint["callbacks"].items() if "ConceptGrowth" in k],
}))
"""


@pytest.mark.slow
def test_checkpoint_of_a_grown_model_round_trips_in_a_fresh_process(tmp_path: Path) -> None:
    trainer, model, growth = fit_with_growth(tmp_path)
    assert model.memory.num_active > 2
    checkpoint = tmp_path / "grown.ckpt"
    trainer.save_checkpoint(checkpoint)
    model.eval()
    tokens = batch(5)["input"]
    with torch.no_grad():
        logits = model(tokens)
    torch.save(
        {"input": tokens, "logits": logits, "concepts": model.memory.concepts.detach()}, tmp_path / "expected.pt"
    )
    script = tmp_path / "check.py"
    script.write_text(textwrap.dedent(CHECK_SCRIPT))
    result = subprocess.run(
        [sys.executable, str(script), str(checkpoint), str(tmp_path / "expected.pt")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["active"] == model.memory.active.tolist()
    assert report["concepts_equal"]
    assert report["max_logit_diff"] < 1e-5
    assert report["callback_state"][0]["counters"] == growth.counters


def test_callback_state_dict_round_trip_and_argument_errors() -> None:
    growth = ConceptGrowth()
    growth.counters["grown"] = 5
    growth.last_step = 42
    restored = ConceptGrowth()
    restored.load_state_dict(growth.state_dict())
    assert restored.counters == growth.counters and restored.last_step == 42
    with pytest.raises(ValueError, match="min_novelty"):
        ConceptGrowth(min_novelty=2.0)
    with pytest.raises(ValueError, match="initial <= capacity"):
        ConceptLayer(8, capacity=2, initial=4)


def test_concept_layer_plugs_into_charlm_via_partial() -> None:
    model = CharLM(vocab_size=40, d_model=32, n_layers=1, n_heads=2, memory=functools.partial(ConceptLayer, capacity=8))
    assert isinstance(model.memory, ConceptLayer)
    assert model.hparams["memory"]["class_path"] == "concept_growth"
