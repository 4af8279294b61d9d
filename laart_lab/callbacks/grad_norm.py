"""``GradNormMonitor``: logs the global gradient norm (before clipping) as ``train/grad_norm``."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.optim import Optimizer


class GradNormMonitor(Callback):
    """Log the total ``norm_type``-norm of all gradients every ``every_n_steps`` optimizer steps.

    Runs in ``on_before_optimizer_step``, i.e. after the backward pass and before Lightning clips,
    so a spike shows what the clipping had to absorb. ``every_n_steps`` defaults to the Trainer's
    ``log_every_n_steps`` (the norm costs one pass over the parameters).
    """

    def __init__(self, norm_type: float = 2.0, every_n_steps: int | None = None) -> None:
        super().__init__()
        self.norm_type = norm_type
        self.every_n_steps = every_n_steps

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer) -> None:
        every = self.every_n_steps or trainer.log_every_n_steps or 1
        if trainer.global_step % every:
            return
        norms = [p.grad.detach().norm(self.norm_type) for p in pl_module.parameters() if p.grad is not None]
        if not norms:
            return
        total = torch.linalg.vector_norm(torch.stack(norms).float(), self.norm_type)
        pl_module.log("train/grad_norm", total, on_step=True, on_epoch=False)
