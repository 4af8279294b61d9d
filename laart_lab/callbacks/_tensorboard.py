"""TensorBoard for the callbacks: find the ``SummaryWriter``, and say once when there is none.

Several callbacks draw figures, text or histograms that only TensorBoard shows. Without a
``TensorBoardLogger`` they cannot log them; rather than silently doing nothing they subclass
:class:`TensorBoardCallback`, which warns once per run, at setup, naming what will be missing.
"""

from __future__ import annotations

from typing import Any, ClassVar

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override


def tensorboard_writer(trainer: Trainer) -> Any | None:
    """The first ``TensorBoardLogger``'s writer among ``trainer.loggers``, or None when there is none."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class TensorBoardCallback(Callback):
    """A callback whose output (some or all) goes to TensorBoard only.

    :meth:`setup` (once per ``fit``/``validate``/``test``, before any batch) warns when the trainer has
    no ``TensorBoardLogger``. Subclasses say what would be missing in :attr:`tensorboard_output`, and
    call ``super().setup(...)`` if they override :meth:`setup`.
    """

    tensorboard_output: ClassVar[str] = "its output"
    """What is not logged without TensorBoard, e.g. ``"the attention-map figures"``."""

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if tensorboard_writer(trainer) is None:
            rank_zero_warn(
                f"{type(self).__name__} logs {self.tensorboard_output} to TensorBoard, but this trainer has no "
                "TensorBoardLogger, so they will not be logged (add `logger: TensorBoardLogger` to the trainer)"
            )
