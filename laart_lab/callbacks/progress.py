"""Progress for logs that are not a terminal: plain lines, no carriage returns or cursor codes.

Lightning's TQDM bar redraws itself with ``\\r`` and ``ESC[A`` (cursor up), which a terminal renders
but a log file (a pipe, ``nohup``, a cluster job's output) keeps as garbage. ``laart-lab`` uses
:class:`LineProgressBar` instead when its output is not a terminal and the recipe does not choose a
progress bar: one line every ``every`` training steps, and one after each validation.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ProgressBar


def _format(metrics: dict[str, Any]) -> str:
    parts = []
    for key, value in metrics.items():
        if key == "v_num":
            continue
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


class LineProgressBar(ProgressBar):
    """A line per ``every`` training steps (and per validation) on stdout; for non-terminal output."""

    def __init__(self, every: int = 50) -> None:
        super().__init__()
        self.every = max(1, int(every))
        self._enabled = True
        self._start = 0.0
        self._start_step = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _print(self, text: str) -> None:
        if self._enabled and self.trainer.is_global_zero:
            print(text, file=sys.stdout, flush=True)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self._start_step = time.monotonic(), trainer.global_step
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        self._print(f"training from step {trainer.global_step}" + (f" to {total}" if total else ""))

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step % self.every:
            return
        rate = (trainer.global_step - self._start_step) / max(time.monotonic() - self._start, 1e-9)
        metrics = _format(self.get_metrics(trainer, pl_module))
        self._print(f"epoch {trainer.current_epoch} step {trainer.global_step} ({rate:.1f} steps/s) {metrics}")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k.startswith("val")}
        self._print(f"validation at step {trainer.global_step}: {_format(metrics)}")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._print(f"training ended at epoch {trainer.current_epoch} step {trainer.global_step}")
