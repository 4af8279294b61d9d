"""``GradNormMonitor``: logs the global gradient norm (before clipping) as ``train/grad_norm``."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import grad_norm
from torch.optim import Optimizer
from typing_extensions import override


class GradNormMonitor(Callback):
    """Log the total ``norm_type``-norm of all gradients every ``every_n_steps`` optimizer steps.

    Runs in ``on_before_optimizer_step``, i.e. after the backward pass and before Lightning clips,
    so a spike shows what the clipping had to absorb. ``every_n_steps`` defaults to the Trainer's
    ``log_every_n_steps`` (the norm costs one pass over the parameters). The norm is Lightning's
    :func:`~lightning.pytorch.utilities.grad_norm` total (``norm_type`` may be ``"inf"``).
    """

    def __init__(self, norm_type: float | str = 2.0, every_n_steps: int | None = None) -> None:
        super().__init__()
        try:
            self.norm_type = float(norm_type)
        except ValueError:
            self.norm_type = -1.0
        if not self.norm_type > 0:
            raise ValueError(f"GradNormMonitor: norm_type must be a positive number or 'inf', got {norm_type!r}")
        self.every_n_steps = every_n_steps

    @override
    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer) -> None:
        every = self.every_n_steps or trainer.log_every_n_steps or 1
        if trainer.global_step % every:
            return
        total = grad_norm(pl_module, self.norm_type).get(f"grad_{self.norm_type}_norm_total")
        if total is not None:  # None when no parameter has a gradient yet
            pl_module.log("train/grad_norm", total, on_step=True, on_epoch=False)
