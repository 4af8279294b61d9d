"""Stopping and resuming real ``laart-lab fit`` processes with real signals.

The reference is an uninterrupted run of the same recipe: an interrupted + resumed run must log the
same training curve at every step after the interruption (same data order, optimizer state and
learning-rate schedule), end at the same step, and do it in the same ``version_N`` folder.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from laart_lab.recipes import resolve_recipe
from tests.conftest import REPO_ROOT, run_cli

ENV = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
LR_TAG = "lr-AdamW/pg1"  # LearningRateMonitor's tag for CharLM's first parameter group (weights with decay)


def charlm_recipe(tmp_path: Path, **trainer: object) -> Path:
    """A tiny CharLM on a generated text file (no reference data needed), logging every step."""
    text = tmp_path / "corpus.txt"
    words = ["the", "king", "and", "queen", "of", "a", "land", "far", "away", "sing", "dance", "rule"]
    generator = torch.Generator().manual_seed(0)
    picks = torch.randint(len(words), (6000,), generator=generator).tolist()
    text.write_text(" ".join(words[i] for i in picks) + "\n")
    recipe = yaml.safe_load((REPO_ROOT / "recipes" / "charlm_shakespeare_softmax_cpu.yaml").read_text())
    recipe["trainer"].update(
        {"max_steps": 240, "max_time": None, "val_check_interval": 120, "log_every_n_steps": 1, **trainer}
    )
    recipe["trainer"]["logger"]["init_args"] = {"save_dir": str(tmp_path / "runs"), "name": "charlm"}
    recipe["trainer"]["callbacks"] = [
        cb
        for cb in recipe["trainer"]["callbacks"]
        if cb["class_path"].split(".")[-1] in ("ModelCheckpoint", "LearningRateMonitor")
    ]
    recipe["trainer"]["enable_model_summary"] = False
    recipe["model"]["init_args"].update({"d_model": 32, "n_layers": 1, "n_heads": 2, "warmup_steps": 10})
    if recipe["trainer"]["max_time"] is None:
        recipe["model"]["init_args"]["lr_schedule"] = "steps"
    recipe["data"]["init_args"].update(
        {
            "path": str(text),
            "block_size": 16,
            "batch_size": 4,
            "eval_batch_size": 16,
            "max_eval_windows": 16,
            "cache_dir": str(tmp_path / "cache"),
        }
    )
    path = tmp_path / "charlm.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def fit_until(recipe: Path, cwd: Path, progress_line: str, sig: int, *extra: str) -> tuple[int, str]:
    """Start ``laart-lab fit``, send ``sig`` once it prints ``progress_line``, return (exit code, stderr)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "laart_lab", "fit", "--config", str(recipe), *extra],
        cwd=cwd,
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 300
    for line in process.stdout:
        if progress_line in line:
            process.send_signal(sig)
            break
        assert time.monotonic() < deadline, "the run made no progress"
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr


def curve(run_dir: Path, tag: str) -> dict[int, float]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    points: dict[int, float] = {}
    for event in events.Scalars(tag):
        assert event.step not in points or abs(points[event.step] - event.value) < 1e-6, (tag, event.step)
        points[event.step] = event.value
    return points


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_charlm_interrupted_and_resumed_matches_an_uninterrupted_run(tmp_path: Path, sig: int) -> None:
    reference_dir, resumed_dir = tmp_path / "reference", tmp_path / "resumed"
    reference_dir.mkdir(), resumed_dir.mkdir()
    reference = run_cli("fit", "--config", str(charlm_recipe(reference_dir)), cwd=reference_dir, env=ENV)
    assert reference.returncode == 0, reference.stderr[-3000:]

    recipe = charlm_recipe(resumed_dir)
    code, stderr = fit_until(recipe, resumed_dir, "step 50 ", sig)
    assert code == (130 if sig == signal.SIGINT else 143), stderr[-3000:]
    saved = resumed_dir / "runs" / "charlm" / "version_0" / "checkpoints" / "interrupted.ckpt"
    assert saved.is_file(), stderr[-3000:]
    assert "--ckpt_path last" in stderr and "Traceback" not in stderr
    stopped_at = torch.load(saved, weights_only=True)["global_step"]
    assert 50 <= stopped_at < 240

    resumed = run_cli("fit", "--config", str(recipe), "--ckpt_path", "last", cwd=resumed_dir, env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {saved.relative_to(resumed_dir)}" in resumed.stdout or str(saved) in resumed.stdout
    assert f"step {stopped_at}" in resumed.stdout
    assert [p.name for p in (resumed_dir / "runs" / "charlm").iterdir()] == ["version_0"]

    plain = run_cli("fit", "--config", str(recipe), "--trainer.max_steps", "3", cwd=resumed_dir, env=ENV)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert "resuming" not in plain.stdout and "Restoring states" not in plain.stderr  # a plain re-run is a new run
    assert (resumed_dir / "runs" / "charlm" / "version_1").is_dir()

    expected = curve(reference_dir / "runs" / "charlm" / "version_0", "train/loss")
    got = curve(resumed_dir / "runs" / "charlm" / "version_0", "train/loss")
    assert max(got) == max(expected) == 239  # the step count continued to max_steps
    after = [step for step in expected if step > stopped_at]
    assert after and all(step in got for step in after)  # one curve, continued in the same folder
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-4, abs=1e-5), step
    lr_expected = curve(reference_dir / "runs" / "charlm" / "version_0", LR_TAG)
    lr_got = curve(resumed_dir / "runs" / "charlm" / "version_0", LR_TAG)
    for step in lr_expected:
        assert lr_got[step] == pytest.approx(lr_expected[step], rel=1e-6), step


@pytest.mark.slow
def test_time_based_schedule_continues_its_clock_after_a_resume(tmp_path: Path) -> None:
    recipe = charlm_recipe(tmp_path, max_steps=100000, max_time="00:00:01:30", val_check_interval=100000)
    config = yaml.safe_load(recipe.read_text())
    config["model"]["init_args"]["lr_decay_steps"] = 10**7  # the clock, not the step count, drives the decay
    recipe.write_text(yaml.safe_dump(config))
    code, stderr = fit_until(recipe, tmp_path, "step 100 ", signal.SIGTERM)
    assert code == 143, stderr[-3000:]
    saved = torch.load(
        tmp_path / "runs" / "charlm" / "version_0" / "checkpoints" / "interrupted.ckpt", weights_only=True
    )
    elapsed = next(v for k, v in saved["callbacks"].items() if k.startswith("Timer"))["time_elapsed"]["train"]
    assert elapsed > 0
    before = curve(tmp_path / "runs" / "charlm" / "version_0", LR_TAG)
    stopped_at = saved["global_step"]
    resumed = run_cli(
        "fit",
        "--config",
        str(recipe),
        "--ckpt_path",
        "last",
        "--trainer.max_steps",
        str(stopped_at + 20),
        cwd=tmp_path,
        env=ENV,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = curve(tmp_path / "runs" / "charlm" / "version_0", LR_TAG)
    last_before = before[max(before)]
    first_after = after[min(step for step in after if step > max(before))]
    peak = config["model"]["init_args"]["lr"]
    # the schedule's clock resumed from `elapsed`: the lr keeps decaying (a reset clock would jump back to
    # the peak, since the step-based progress is ~0 with lr_decay_steps = 1e7)
    assert first_after <= last_before * (1 + 1e-6) < peak


QUICK = [
    "--trainer.max_epochs",
    "2",
    "--trainer.limit_train_batches",
    "60",
    "--trainer.limit_val_batches",
    "2",
    "--trainer.log_every_n_steps",
    "1",
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("recipe_name", "extra"),
    [
        ("quickstart", []),
        ("clutrr_slrm_generated", ["--data.init_args.batch_size", "32"]),
        (
            "laart_clutrr_generated",
            [
                "--data.init_args.batch_size", "16",
                "--data.init_args.generated_train_rows", "1200",
                "--data.init_args.val_chained", "12",
                "--model.init_args.d_model", "32",
                "--model.init_args.n_layers", "1",
            ],
        ),  # fmt: skip
        pytest.param(
            "parity_ctm",  # the laart-ctm plugin's own LightningModule and data module
            [
                "--data.init_args.train_size", "4000",
                "--data.init_args.val_size", "64",
                "--model.init_args.iterations", "3",
                "--model.init_args.d_model", "16",
                "--model.init_args.d_attention", "8",
                "--model.init_args.d_embed", "8",
                "--model.init_args.n_sync_out", "8",
                "--model.init_args.n_sync_action", "8",
                "--model.init_args.heads", "2",
                "--trainer.max_steps", "-1",
                "--trainer.val_check_interval", "null",
                "--trainer.check_val_every_n_epoch", "1",
                "--trainer.enable_progress_bar", "true",  # the recipe turns it off; the test waits for "step 50"
            ],
            marks=pytest.mark.skipif(importlib.util.find_spec("laart_ctm") is None, reason="laart-ctm not installed"),
        ),  # fmt: skip
    ],
)
def test_sigterm_leaves_a_resumable_checkpoint_for_other_model_families(
    tmp_path: Path, recipe_name: str, extra: list[str]
) -> None:
    recipe_path = resolve_recipe(recipe_name)  # a shipped recipe or an installed plugin's
    assert recipe_path is not None, recipe_name
    recipe = yaml.safe_load(recipe_path.read_text())
    recipe["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    recipe["trainer"]["callbacks"] = [
        cb for cb in recipe["trainer"]["callbacks"] if cb["class_path"].endswith("ModelCheckpoint")
    ]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    code, stderr = fit_until(path, tmp_path, "step 50 ", signal.SIGTERM, *QUICK, *extra)
    assert code == 143, stderr[-3000:]
    run = tmp_path / "runs" / recipe["trainer"]["logger"]["init_args"]["name"] / "version_0"
    stopped_at = torch.load(run / "checkpoints" / "interrupted.ckpt", weights_only=True)["global_step"]
    assert 50 <= stopped_at < 120
    resumed = run_cli("fit", "--config", str(path), *QUICK, *extra, "--ckpt_path", "last", cwd=tmp_path, env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # the data resumes mid-epoch in the same order (both data modules use laart_lab.data.resumable)
    assert "You're resuming from a checkpoint that ended before the epoch ended" not in resumed.stderr
    assert not (run.parent / "version_1").exists()
    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 120
    assert not (run / "checkpoints" / "interrupted.ckpt").exists()  # a finished run leaves nothing to resume
