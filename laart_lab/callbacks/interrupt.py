"""A resumable checkpoint in the run's own folder when ``fit`` is stopped by Ctrl-C, SIGTERM or an error.

:class:`InterruptCheckpoint` is Lightning's :class:`~lightning.pytorch.callbacks.OnExceptionCheckpoint`
with two changes:

* its folder defaults to the run's own checkpoint folder (``<save_dir>/<name>/version_N/checkpoints``,
  where ``ModelCheckpoint`` writes), resolved when the run starts, so that ``--ckpt_path last`` finds it
  and a resume continues in the same ``version_N`` (TensorBoard curves continue);
* the first Ctrl-C (SIGINT) is routed into Lightning's own SIGTERM handling: Lightning sets
  ``trainer.received_sigterm`` and stops at the next batch boundary with a ``SIGTERMException``, and
  this callback's ``on_exception`` then saves a checkpoint whose step count, loop state and data
  position agree. (A ``KeyboardInterrupt`` can land in the middle of an optimizer step.) A second
  Ctrl-C falls back to Python's ``KeyboardInterrupt``, which Lightning also handles.

``laart-lab fit`` adds one to every run (``--interrupt_checkpoint.filename`` renames the file).
"""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import OnExceptionCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

INTERRUPT_FILENAME = "interrupted"

#: what the last interrupted fit in this process saved: {"path": ..., "signal": "SIGINT" | "SIGTERM" | None}
last_interrupt: dict[str, Any] = {}


def run_checkpoint_dir(trainer: pl.Trainer) -> str:
    """The folder ``ModelCheckpoint`` writes to by default for this run (``.../version_N/checkpoints``)."""
    for callback in trainer.checkpoint_callbacks:
        dirpath = getattr(callback, "dirpath", None)
        if dirpath and not isinstance(callback, OnExceptionCheckpoint):
            return str(dirpath)
    if trainer.loggers:
        logger = trainer.loggers[0]
        save_dir = logger.save_dir or trainer.default_root_dir
        name, version = logger.name, logger.version
        version = version if isinstance(version, str) else f"version_{version}"
        return (
            os.path.join(str(save_dir), str(name), version, "checkpoints")
            if name
            else os.path.join(str(save_dir), version, "checkpoints")
        )
    return os.path.join(str(trainer.default_root_dir), "checkpoints")


class InterruptCheckpoint(OnExceptionCheckpoint):
    """Save ``<run>/checkpoints/interrupted.ckpt`` when ``fit`` stops on a signal or an exception.

    Args:
        dirpath: where to save; ``None`` (default) = the run's own checkpoint folder.
        filename: file name without the ``.ckpt`` extension.
    """

    def __init__(self, dirpath: str | None = None, filename: str = INTERRUPT_FILENAME) -> None:
        super().__init__(dirpath=dirpath or "", filename=filename)
        self._fixed_dirpath = dirpath is not None
        self._previous_sigint: Any = None

    @property
    def ckpt_path(self) -> str:  # type: ignore[override]
        # empty until the run's folder is known: Lightning's implicit "last" must not find a stale file
        return os.path.join(self.dirpath, self.filename + self.FILE_EXTENSION) if self.dirpath else ""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != TrainerFn.FITTING.value:
            return
        if not self._fixed_dirpath:
            # ModelCheckpoint resolves its folder in its own setup, which may run after this one; resolve the
            # same folder from the logger, agreed on every rank
            self.dirpath = trainer.strategy.broadcast(run_checkpoint_dir(trainer))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not _is_main_thread():
            return
        self._previous_sigint = signal.getsignal(signal.SIGINT)

        def first_ctrl_c(signum: int, frame: FrameType | None) -> None:
            # hand Ctrl-C to Lightning's SIGTERM handling (a clean stop at the next batch end); a second
            # Ctrl-C is a plain KeyboardInterrupt
            signal.signal(signal.SIGINT, signal.default_int_handler)
            last_interrupt["signal"] = "SIGINT"
            print("\nCtrl-C: stopping after this batch and saving a resumable checkpoint (Ctrl-C again to abort)")
            os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGINT, first_ctrl_c)

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None and _is_main_thread():
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_sigint()
        _save_final_last(trainer)

    def on_exception(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        self._restore_sigint()
        if trainer.state.fn != TrainerFn.FITTING or not self.dirpath or trainer.global_step == 0:
            return  # nothing trained yet (e.g. a data error in setup): nothing worth resuming
        trainer.save_checkpoint(self.ckpt_path, weights_only=False)  # the full state: resumable
        last_interrupt["path"] = self.ckpt_path
        last_interrupt["step"] = trainer.global_step
        if trainer.received_sigterm:
            last_interrupt.setdefault("signal", "SIGTERM")

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # a run that finished normally has nothing left to resume from this file (last.ckpt covers it)
        if stage == TrainerFn.FITTING.value and self.dirpath:
            trainer.strategy.remove_checkpoint(self.ckpt_path)


def _save_final_last(trainer: pl.Trainer) -> None:
    """Make every ``save_last`` checkpoint hold the run's final state.

    Lightning 2.6 writes ``last.ckpt`` only when a top-k checkpoint is written in the same step, so a run
    whose monitored metric stopped improving ends with a ``last.ckpt`` from an earlier step, and
    ``--ckpt_path last`` would silently resume from there.
    """
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, OnExceptionCheckpoint) or not getattr(callback, "save_last", False):
            continue
        dirpath = getattr(callback, "dirpath", None)
        last = callback.last_model_path or (
            os.path.join(dirpath, callback.CHECKPOINT_NAME_LAST + callback.FILE_EXTENSION) if dirpath else ""
        )
        if last and callback.save_last is True:
            trainer.save_checkpoint(last, weights_only=False)  # the full state: last.ckpt is what resumes
            callback.last_model_path = last


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
