"""``PerKAccuracy``: the accuracy per path length k as one TensorBoard text table per validation/test.

The model logs each ``val/acc_k{k}`` and ``test/acc_k{k}`` as its own scalar; this callback puts them
side by side (a markdown table under ``per_k_accuracy/val`` and ``per_k_accuracy/test``), which is how
length generalisation is read.
"""

from __future__ import annotations

import re

from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from laart_lab.callbacks._tensorboard import TensorBoardCallback, tensorboard_writer

_KEY = re.compile(r"^(val|test)/acc_k(\d+)$")


def per_k_table(metrics: dict, split: str) -> dict[int, float]:
    """``{k: accuracy}`` from logged metrics named ``<split>/acc_k<k>``."""
    out = {}
    for key, value in metrics.items():
        match = _KEY.match(key)
        if match and match.group(1) == split:
            out[int(match.group(2))] = float(value)
    return dict(sorted(out.items()))


class PerKAccuracy(TensorBoardCallback):
    """Write the per-k accuracy table to TensorBoard after each validation and at the end of testing."""

    tensorboard_output = "the per-k accuracy tables"

    def _write(self, trainer: Trainer, split: str) -> None:
        writer = tensorboard_writer(trainer)
        table = per_k_table(trainer.callback_metrics, split)
        if writer is None or not table:
            return
        rows = "\n".join(f"| {k} | {acc:.4f} |" for k, acc in table.items())
        mean = sum(table.values()) / len(table)
        writer.add_text(
            f"per_k_accuracy/{split}", f"| k | acc |\n|---|---|\n{rows}\n| mean | {mean:.4f} |", trainer.global_step
        )

    @override
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._write(trainer, "val")

    @override
    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, "test")
