"""benchmarks/laart_clutrr.py: the chosen checkpoint's validation figures, and a validation-only mode with no test."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
TINY = [
    "--data.init_args.generated_train_rows", "96",
    "--data.init_args.generated_test_rows", "4",
    "--data.init_args.generated_test_ks", "[2, 4]",
    "--data.init_args.batch_size", "16",
    "--model.init_args.d_model", "32",
    "--model.init_args.n_layers", "1",
    "--trainer.max_epochs", "1",
    "--trainer.max_time", "null",
    "--model.init_args.lr_schedule", "steps",
]  # fmt: skip


def load_benchmark():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("laart_clutrr_bench", BENCHMARKS / "laart_clutrr.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.slow
def test_validation_only_runs_no_test_and_reports_the_chosen_checkpoint(tmp_path: Path) -> None:
    bench = load_benchmark()
    judged = bench.run("laart_clutrr_generated", 0, str(tmp_path / "v"), TINY, test=False)
    assert "test" not in judged
    assert set(judged["val_best"]) >= {"acc", "fast_acc", "slow_acc", "edge_acc"}
    # one epoch: the chosen checkpoint is the last epoch's, so validating it again gives the same figures
    assert judged["val_best"]["acc"] == pytest.approx(judged["val_last_epoch"]["acc"])
    text = bench.summarise([judged])
    assert "validation, the checkpoint chosen on val/acc" in text and "seed 0:" in text
    assert "GPT-4" not in text  # no test table

    tested = bench.run("laart_clutrr_generated", 0, str(tmp_path / "t"), TINY)
    assert set(tested["test"]["acc"]) == {2, 4} and "val_best" in tested
    table = bench.summarise([tested])
    assert "GPT-4" in table and "validation, the checkpoint chosen on val/acc" in table
