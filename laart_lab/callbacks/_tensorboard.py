"""Find the TensorBoard ``SummaryWriter`` among a trainer's loggers (None when there is none)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger


def tensorboard_writer(trainer: Trainer) -> Any | None:
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None
