"""CharLM trained for real (briefly): loss goes down, resume is exact, DDP via the CLI, fresh-process loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from laart_lab.data.text import TextDataModule
from laart_lab.models.charlm import CharLM
from laart_lab.paths import data_path

SHAKESPEARE = data_path("tinyshakespeare", "input.txt")
FALLBACK_TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 60
REPO_ROOT = Path(__file__).resolve().parent.parent


def corpus(tmp_path: Path, chars: int = 20_000) -> Path:
    """A small training text: a slice of Tiny Shakespeare when present, else a repeated verse."""
    text = SHAKESPEARE.read_text(encoding="utf-8")[:chars] if SHAKESPEARE.is_file() else FALLBACK_TEXT
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return path


def tiny_recipe(tmp_path: Path, text: Path, **trainer) -> Path:
    recipe = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": 4,
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(tmp_path / "runs"), "name": "tiny"},
            },
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "limit_val_batches": 2,
            "callbacks": [
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"save_last": False}},
            ],
            **trainer,
        },
        "model": {
            "class_path": "laart_lab.models.charlm.CharLM",
            "init_args": {"attention": {"class_path": "softmax"}, "d_model": 32, "n_layers": 1, "n_heads": 2},
        },
        "data": {
            "class_path": "text",
            "init_args": {"path": str(text), "block_size": 32, "batch_size": 4, "cache_dir": str(tmp_path / "cache")},
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text("# tiny CharLM recipe for tests\n" + yaml.safe_dump(recipe))
    return path


def fit(
    tmp_path: Path, text: Path, max_steps: int, ckpt_path: str | None = None, callbacks=(), **model_kwargs
) -> CharLM:
    seed_everything(0)
    dm = TextDataModule(path=str(text), block_size=32, batch_size=8, cache_dir=str(tmp_path / "cache"))
    facts = dm.data_facts()
    model = CharLM(
        **facts, d_model=48, n_layers=2, n_heads=4, lr=3e-3, warmup_steps=5, lr_decay_steps=40, **model_kwargs
    )
    trainer = Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=bool(callbacks),
        callbacks=list(callbacks),
        gradient_clip_val=1.0,
        limit_val_batches=0,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.skipif(not SHAKESPEARE.is_file(), reason=f"reference data absent: {SHAKESPEARE} (set LAART_LAB_DATA)")
def test_a_few_steps_lower_the_loss_on_shakespeare(tmp_path: Path) -> None:
    text = corpus(tmp_path)
    dm = TextDataModule(path=str(text), block_size=32, batch_size=8, cache_dir=str(tmp_path / "cache"))
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))

    def loss(model: CharLM) -> float:
        model.eval()
        with torch.no_grad():
            return model._loss(batch)[1].item()

    seed_everything(0)
    untrained = CharLM(**dm.data_facts(), d_model=48, n_layers=2, n_heads=4)
    before = loss(untrained)
    assert before == pytest.approx(torch.log(torch.tensor(float(dm.data_facts()["vocab_size"]))).item(), abs=0.3)
    after = loss(fit(tmp_path, text, max_steps=40))
    assert after < before - 0.8, (before, after)


@pytest.mark.slow
def test_resume_mid_run_reproduces_the_uninterrupted_weights(tmp_path: Path) -> None:
    text = corpus(tmp_path, 8000)
    checkpoints = tmp_path / "ckpts"
    every = ModelCheckpoint(dirpath=checkpoints, every_n_train_steps=5, save_top_k=-1)
    full = fit(tmp_path, text, max_steps=10, callbacks=[every])
    half = checkpoints / "epoch=0-step=5.ckpt"
    assert half.is_file(), sorted(p.name for p in checkpoints.iterdir())
    resumed = fit(tmp_path / "resume", text, max_steps=10, ckpt_path=str(half))
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, msg=f"parameter {name} differs after resume")
    fresh = fit(tmp_path / "other", text, max_steps=5)
    assert not torch.equal(fresh.embed.weight, full.embed.weight)  # the comparison can fail


def _run_cli(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "laart_lab", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_ddp_two_cpu_processes_through_the_cli_write_one_checkpoint(tmp_path: Path) -> None:
    text = corpus(tmp_path, 8000)
    recipe = tiny_recipe(tmp_path, text)
    result = _run_cli(
        [
            "fit",
            "--config",
            str(recipe),
            "--trainer.strategy",
            "ddp",
            "--trainer.devices",
            "2",
            "--trainer.max_steps",
            "3",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    ckpts = list((tmp_path / "runs").rglob("*.ckpt"))
    assert len(ckpts) == 1, ckpts
    checkpoint = torch.load(ckpts[0], weights_only=True)
    assert checkpoint["global_step"] == 3
    assert checkpoint["hyper_parameters"]["vocabulary"] == "".join(sorted(set(text.read_text())))


@pytest.mark.slow
def test_checkpoint_loads_in_a_fresh_process_with_weights_only(tmp_path: Path) -> None:
    text = corpus(tmp_path, 8000)
    recipe = tiny_recipe(tmp_path, text, max_steps=2)
    result = _run_cli(["fit", "--config", str(recipe)], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    (ckpt,) = list((tmp_path / "runs").rglob("*.ckpt"))
    probe = (
        "import json, sys, torch\n"
        "from laart_lab.models.charlm import CharLM\n"
        "raw = torch.load(sys.argv[1], weights_only=True)\n"
        "model = CharLM.from_checkpoint(sys.argv[1])\n"
        "logits = model(torch.tensor([[0, 1, 2, 3]]))[0, -1]\n"
        "print(json.dumps({'step': raw['global_step'], 'logits': logits.tolist()}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", probe, str(ckpt)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["step"] == 2
    checkpoint = torch.load(ckpt, weights_only=True)
    model = CharLM(**{k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")})
    model.load_state_dict(checkpoint["state_dict"])
    expected = model.eval()(torch.tensor([[0, 1, 2, 3]]))[0, -1]
    torch.testing.assert_close(torch.tensor(report["logits"]), expected.detach(), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_callbacks_log_samples_attention_maps_grad_norm_and_metrics(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from laart_lab.callbacks.attention_maps import AttentionMaps
    from laart_lab.callbacks.grad_norm import GradNormMonitor
    from laart_lab.callbacks.text_samples import TextSamples

    text = corpus(tmp_path, 8000)
    seed_everything(0)
    dm = TextDataModule(path=str(text), block_size=16, batch_size=4, cache_dir=str(tmp_path / "cache"))
    model = CharLM(**dm.data_facts(), d_model=32, n_layers=2, n_heads=2, lr_decay_steps=10)
    samples, maps = TextSamples(num_chars=20, prompt="T"), AttentionMaps(snippet_length=12)
    logger = TensorBoardLogger(str(tmp_path), name="cb")
    trainer = Trainer(
        accelerator="cpu",
        max_steps=4,
        val_check_interval=4,
        limit_val_batches=3,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        logger=logger,
        callbacks=[samples, maps, GradNormMonitor(every_n_steps=1)],
        enable_progress_bar=False,
        enable_checkpointing=False,
    )
    trainer.fit(model, datamodule=dm)
    assert samples.last_sample is not None and samples.last_sample.startswith("T") and len(samples.last_sample) == 21
    assert maps.last_maps is not None and all(m is not None and m.shape == (2, 12, 12) for m in maps.last_maps)
    events = EventAccumulator(logger.log_dir)
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/bpc", "val/loss", "val/bpc", "train/grad_norm"} <= scalars
    assert "attention/maps" in events.Tags()["images"]
    val_loss, val_bpc = events.Scalars("val/loss")[-1].value, events.Scalars("val/bpc")[-1].value
    assert val_bpc == pytest.approx(val_loss / 0.6931471805599453, rel=1e-5)
    assert trainer.validate(model, datamodule=dm, verbose=False)[0]["val/loss"] == pytest.approx(val_loss, rel=1e-5)
