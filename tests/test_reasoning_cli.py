"""Every reasoner trains a few steps through the CLI from its recipe; checkpoints are plain data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from laart_lab.cli import main
from laart_lab.paths import data_path

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
SMALL_GENERATED = [
    "--data.init_args.source", "generated",
    "--data.init_args.path", "null",
    "--data.init_args.generated_train_rows", "200",
    "--data.init_args.generated_test_rows", "8",
    "--data.init_args.generated_test_ks", "[2, 5]",
    "--data.init_args.batch_size", "32",
]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


def fit_args(recipe: str, tmp_path: Path) -> list[str]:
    return [
        "fit", "--config", str(RECIPES / f"{recipe}.yaml"),
        "--trainer.max_steps", "3",
        "--trainer.val_check_interval", "3",
        "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--trainer.logger.init_args.version", "v",
    ]  # fmt: skip


def checkpoint(tmp_path: Path, recipe: str) -> Path:
    found = sorted((tmp_path / recipe / "v" / "checkpoints").glob("*.ckpt"))
    assert found, f"no checkpoint written under {tmp_path}"
    return found[0]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["clutrr_slrm_generated", "clutrr_gru", "clutrr_gnn", "clutrr_transformer"])
def test_reasoner_trains_through_the_cli(recipe: str, tmp_path: Path) -> None:
    assert main(fit_args(recipe, tmp_path) + SMALL_GENERATED) == 0
    ckpt = torch.load(checkpoint(tmp_path, recipe), weights_only=True)  # plain data only
    hparams = ckpt["hyper_parameters"]
    assert hparams["num_relations"] == len(hparams["relation_names"]) and "grandfather" in hparams["relation_names"]
    assert ckpt["relation_names"] == hparams["relation_names"]
    if recipe.startswith("clutrr_slrm"):
        assert isinstance(ckpt["invented_relations"], dict)


@pytest.mark.slow
def test_slrm_test_command_prints_the_per_k_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = "clutrr_slrm_generated"
    assert main(fit_args(recipe, tmp_path) + SMALL_GENERATED) == 0
    ckpt = checkpoint(tmp_path, recipe)
    capsys.readouterr()
    test_args = ["test", "--config", str(RECIPES / f"{recipe}.yaml"), "--ckpt_path", str(ckpt)]
    test_args += ["--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"]
    assert main(test_args + SMALL_GENERATED) == 0
    out = capsys.readouterr().out
    assert "Test accuracy per k (SLRM)" in out and "test/acc_k5" in out and "test/acc_mean" in out


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.skipif(not data_path("clutrr", "data_089907f8.zip").exists(), reason="CLUTRR reference data absent")
def test_real_clutrr_recipe_trains(tmp_path: Path) -> None:
    assert main(fit_args("clutrr_slrm", tmp_path) + ["--data.init_args.batch_size", "32"]) == 0
    assert torch.load(checkpoint(tmp_path, "clutrr_slrm"), weights_only=True)["hyper_parameters"]["num_relations"] == 20
