"""``ema_weights``: validate, checkpoint and test an exponential moving average of the weights.

Lightning's :class:`~lightning.pytorch.callbacks.EMAWeightAveraging` keeps the average beside the model, swaps it
in for every validation and saves it as the checkpoint's ``state_dict`` (the current weights go to
``current_model_state``, so a resumed fit goes on from them). What it does with *buffers* does not suit the models
here: averaging them (``use_buffers=True``) blends state that is not a weight (the SLRM's ``pair_evidence`` counts,
``LaartModel``'s chosen ``check_threshold``) and truncates integer ones, while not averaging them
(``use_buffers=False``) freezes the copy taken when the fit began, which is then swapped in at validation. This
callback averages the parameters only and copies the model's buffers into the average wherever the average is
read (before every validation, every checkpoint and the end of training), so the check threshold that a validation
of the averaged weights chose is the one saved with them. It also keeps ``current_model_state`` the trained
weights in the two saves Lightning's callback gets wrong here: one during validation (an exception there, while the
average is swapped in) and the final ``last.ckpt`` written after training ends (``interrupt``), when the model
already holds the average.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from torch import Tensor


class EmaWeights(EMAWeightAveraging):
    """Exponential moving average of the parameters, with the model's own buffers.

    Args:
        decay: weight of the old average at each update (0.998: a half-life of about 350 updates).
        update_every_n_steps: update the average every this many optimizer steps.
        update_starting_at_step: first step that updates it (None: from the first step; the first update copies
            the weights, so the average does not start from the initialisation).
    """

    def __init__(
        self, decay: float = 0.998, update_every_n_steps: int = 1, update_starting_at_step: int | None = None
    ) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_weights: decay is the old average's weight per update, in (0, 1); got {decay}")
        if update_every_n_steps < 1:
            raise ValueError(f"ema_weights: update_every_n_steps counts steps (>= 1); got {update_every_n_steps}")
        super().__init__(
            use_buffers=False,
            decay=decay,
            update_every_n_steps=update_every_n_steps,
            update_starting_at_step=update_starting_at_step,
        )
        self._average_swapped_in = False
        self._trained_state: dict[str, Tensor] | None = None  # the trained weights, once the average replaced them

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._average_swapped_in, self._trained_state = False, None

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._average_model is not None:  # resuming a fit: the average and the trained weights, each where it was
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
        # validate, test, predict: the checkpoint's state_dict is the average, which is what is evaluated

    @torch.no_grad()
    def _copy_buffers(self, pl_module: pl.LightningModule) -> None:
        if self._average_model is None:
            return
        for average, current in zip(self._average_model.module.buffers(), pl_module.buffers()):
            average.copy_(current)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._copy_buffers(pl_module)
        super().on_validation_epoch_start(trainer, pl_module)
        self._average_swapped_in = self._average_model is not None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_epoch_end(trainer, pl_module)
        self._average_swapped_in = False

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._copy_buffers(pl_module)  # e.g. the check threshold the last validation (of the average) chose
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self._average_model is None:
            return
        if self._average_swapped_in:  # saved mid-validation (an exception): model and average are swapped, so are these
            checkpoint["state_dict"], checkpoint["current_model_state"] = (
                checkpoint["current_model_state"],
                checkpoint["state_dict"],
            )
        if self._trained_state is not None:
            checkpoint["current_model_state"] = self._trained_state

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._copy_buffers(pl_module)
        self._trained_state = {name: value.detach().clone() for name, value in pl_module.state_dict().items()}
        super().on_train_end(trainer, pl_module)
