"""The long-range recall task: far queries really are beyond the window, streams stay in order, and the
``recall`` recipes build and log test/acc."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from laart_lab.data.recall import IGNORE, RecallDataModule, RecallSpec, recall_document
from laart_lab.models.charlm import CharLM
from laart_lab.recipe_check import check_recipe
from tests.conftest import REPO_ROOT, run_cli


def test_far_queries_are_answerable_only_from_an_earlier_window() -> None:
    spec = RecallSpec(block_size=32, pairs=6, queries_per_window=6)
    rng = np.random.default_rng(0)
    for _ in range(20):
        tokens, far, near = recall_document(rng, spec)
        w = spec.block_size
        listing = {int(k): int(v) for k, v in zip(tokens[: w - 1], tokens[1:w]) if k < spec.num_keys}
        assert len(listing) == spec.pairs
        for t in np.flatnonzero(far | near):
            key, value = int(tokens[t]), int(tokens[t + 1])
            assert listing[key] == value  # every query repeats the listed value
            window_start = (t // w) * w
            seen_in_window = key in tokens[window_start:t].tolist()
            assert seen_in_window == bool(near[t])  # far: the key is nowhere in the visible part of the window
        assert far.any()


def test_stream_order_boundaries_and_value_targets() -> None:
    data = RecallDataModule(block_size=16, pairs=4, queries_per_window=3, batch_size=3, train_batches=30)
    batches = list(data.train_dataloader())
    assert len(batches) == 30
    assert batches[0]["stream_start"].all()
    for previous, current in zip(batches, batches[1:]):
        continuing = ~current["stream_start"]
        # consecutive windows of a continuing stream overlap by one token (target of the last = next input)
        last_target = previous["target"][continuing, -1]
        known = last_target != IGNORE
        assert torch.equal(last_target[known], current["input"][continuing, 0][known])
    for batch in batches:
        targets = batch["target"][batch["target"] != IGNORE]
        assert ((targets >= 16) & (targets < 32)).all()  # only value tokens are trained on
        assert (batch["target"][batch["score_mask"]] != IGNORE).all()
    starts = torch.stack([b["stream_start"] for b in batches])
    assert starts.sum(dim=0).min() >= 30 // 5  # documents of 3..5 windows: boundaries differ per stream
    assert not torch.equal(starts[:, 0], starts[:, 1]) or not torch.equal(starts[:, 1], starts[:, 2])


def test_validation_is_fixed_and_training_changes_every_epoch() -> None:
    data = RecallDataModule(block_size=16, pairs=4, queries_per_window=3, batch_size=2, train_batches=2, val_batches=2)
    val_a, val_b = list(data.val_dataloader()), list(data.val_dataloader())
    assert all(torch.equal(a["input"], b["input"]) for a, b in zip(val_a, val_b))
    loader = data.train_dataloader()
    epoch_0, epoch_1 = list(loader), list(loader)
    assert not torch.equal(epoch_0[0]["input"], epoch_1[0]["input"])
    assert data.data_facts() == {"vocab_size": 40, "block_size": 16}
    assert data.chance == pytest.approx(1 / 16)


def test_bad_task_shapes_are_reported() -> None:
    with pytest.raises(ValueError, match="pairs"):
        RecallSpec(num_keys=4, pairs=5)
    with pytest.raises(ValueError, match="min_windows"):
        RecallSpec(min_windows=1)


def test_charlm_logs_accuracy_on_the_scored_recall_tokens_only() -> None:
    model = CharLM(vocab_size=40, block_size=16, d_model=16, n_layers=1, n_heads=2)
    data = RecallDataModule(block_size=16, pairs=4, queries_per_window=3, batch_size=4, val_batches=2)
    batch = list(data.val_dataloader())[1]  # second windows: queries whose key is in the first window
    model.eval()
    logged = {}
    model.log = lambda name, value, **kwargs: logged.__setitem__(name, value)  # type: ignore[method-assign]
    with torch.no_grad():
        model.validation_step(batch, 0)
        logits = model(batch["input"])
    mask = batch["score_mask"]
    assert mask.any() and (~mask & (batch["target"] != IGNORE)).any()  # scored and unscored value targets
    expected = (logits.argmax(-1) == batch["target"])[mask].float().mean()
    torch.testing.assert_close(logged["val/acc"].compute(), expected)


@pytest.mark.parametrize("name", ["recall_kv_memory", "recall_baseline"])
def test_recall_recipes_are_valid(name: str) -> None:
    assert check_recipe(REPO_ROOT / "recipes" / f"{name}.yaml", instantiate=False) == []


@pytest.mark.slow
def test_recall_recipe_logs_test_accuracy_through_the_cli(tmp_path) -> None:
    result = run_cli(
        "test",
        "--config",
        str(REPO_ROOT / "recipes" / "recall_kv_memory.yaml"),
        "--data.init_args.test_batches",
        "3",
        "--trainer.logger.init_args.save_dir",
        str(tmp_path),
        "--trainer.enable_progress_bar",
        "false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test/acc" in result.stdout
