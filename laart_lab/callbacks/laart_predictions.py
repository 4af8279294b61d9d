"""``LaartPredictions``: ``laart-lab predict`` writes one readable row per story (JSON lines or CSV).

Each row of :meth:`~laart_lab.models.laart.LaartModel.predict_step` holds the CLUTRR ``id``, k, the
query, the gold answer, the fast / slow / laart answers, the check's verdict, every fact the reader
extracted (with its confidence), each person's read gender (with its confidence), the chain of entities
the slow system composed, and the SLRM's derivation (which pair it composed first, and so on). CSV cells
of nested fields hold JSON.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Literal

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter


class LaartPredictions(BasePredictionWriter):
    """Write predictions to ``path`` (default: ``predictions.<format>`` in the run's log folder).

    Args:
        path: output file; None writes beside the logs (or in the working folder without a logger).
        format: ``jsonl`` (one JSON object per line) or ``csv``.
    """

    def __init__(self, path: str | None = None, format: Literal["jsonl", "csv"] = "jsonl") -> None:
        super().__init__(write_interval="epoch")
        if format not in ("jsonl", "csv"):
            raise ValueError(f"format must be 'jsonl' or 'csv', got {format!r}")
        self.path, self.format = path, format
        self.written: str | None = None

    def _output_path(self, trainer: Trainer) -> str:
        if self.path is not None:
            return self.path
        logger = trainer.loggers[0] if trainer.loggers else None
        folder = getattr(logger, "log_dir", None) or trainer.default_root_dir or "."
        return os.path.join(folder, f"predictions.{self.format}")

    def write_on_epoch_end(
        self, trainer: Trainer, pl_module: LightningModule, predictions: Any, batch_indices: Any
    ) -> None:
        batches = (
            predictions
            if predictions
            and isinstance(predictions[0], list)
            and predictions[0]
            and isinstance(predictions[0][0], list)
            else [predictions]
        )
        rows = [row for loader in batches for batch in loader for row in batch]
        path = self._output_path(trainer)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as handle:
            if self.format == "jsonl":
                for row in rows:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                fields = list(rows[0]) if rows else []
                writer = csv.DictWriter(handle, fieldnames=fields)
                writer.writeheader()
                for row in rows:
                    writer.writerow(
                        {k: v if isinstance(v, (str, int, float)) else json.dumps(v) for k, v in row.items()}
                    )
        self.written = path
        print(f"wrote {len(rows)} predictions to {path}")
