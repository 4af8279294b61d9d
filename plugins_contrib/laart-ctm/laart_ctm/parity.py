"""``ParityCTM``: a LightningModule that solves cumulative parity with the CTM core.

Each bit becomes a token (``token_encoding: additive``: bit embedding + learned position embedding;
``joint``: one learned vector per (position, bit value)); the CTM attends over the ``L`` tokens for
``iterations`` ticks and predicts all ``L`` running parities at every tick
(``out_shape = [L, 2]``). It trains with the certainty-based loss.

Metrics (the prediction of an example is taken at its most-certain tick, or the last tick with
``predict_with: last``):

* ``{split}/acc``: per-position accuracy, i.e. the fraction of the ``B x L`` running parities
  predicted correctly (micro average over positions and sequences);
* ``{split}/seq_acc``: the fraction of sequences whose ``L`` running parities are all correct;
* ``{split}/loss``: the certainty-based loss.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import MulticlassAccuracy

from laart_ctm.certainty import certainty_loss, position_certainty
from laart_ctm.config import CTMConfig, check_ctm_fields, with_ctm_fields
from laart_ctm.core import ContinuousThoughtMachine, CTMOutput

SPLITS = ("train", "val", "test")
TOKEN_ENCODINGS = ("additive", "joint")
TICK_SELECTIONS = ("example", "position")


@with_ctm_fields(CTMConfig)
class ParityCTM(LightningModule):
    """Cumulative parity with a CTM. ``seq_len`` defaults to the data module's fact.

    ``**ctm`` are the CTM's hyper-parameters, flat (``iterations=24, heads=8, ...``): the fields of
    :class:`laart_ctm.config.CTMConfig`. ``d_embed`` is the token width; ``lr``/``weight_decay``/
    ``warmup_steps`` drive AdamW with a linear warm-up, then cosine decay over the trainer's total steps.

    ``token_encoding``: ``"additive"`` embeds a bit as ``bit_embedding[bit] + position_embedding[i]``;
    ``"joint"`` looks up one learned vector per (position, bit value), so the value read from a token
    can depend on position and bit together (an average over several tokens then still tells which
    bits were set where). Neither encoding sees anything but the bits and their positions.

    ``tick_selection``: ``"example"`` (the paper) reads all ``L`` running parities of a sequence at
    one tick, chosen by the certainty averaged over positions, and trains with the paper's loss;
    ``"position"`` gives every position its own most-certain and lowest-loss tick (see
    :mod:`laart_ctm.certainty`). On 16 bits ``"position"`` learned more slowly (README), so the recipe
    keeps ``"example"``.
    """

    def __init__(
        self,
        seq_len: int | None = None,
        d_embed: int = 64,
        predict_with: str = "certain",
        token_encoding: str = "additive",
        tick_selection: str = "example",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 200,
        **ctm: Any,
    ) -> None:
        super().__init__()
        if seq_len is None or seq_len < 1:
            raise ValueError(
                f"ParityCTM needs seq_len >= 1 (got {seq_len}): set model.init_args.seq_len or use the "
                "`parity` data module, which provides it"
            )
        if token_encoding not in TOKEN_ENCODINGS:
            raise ValueError(
                f"ParityCTM: token_encoding must be one of {TOKEN_ENCODINGS}; got {token_encoding!r}"
            )
        if predict_with not in ("certain", "last"):
            raise ValueError(f"ParityCTM: predict_with must be 'certain' or 'last'; got {predict_with!r}")
        if tick_selection not in TICK_SELECTIONS:
            raise ValueError(
                f"ParityCTM: tick_selection must be one of {TICK_SELECTIONS}; got {tick_selection!r}"
            )
        if lr <= 0 or warmup_steps < 0:
            raise ValueError(
                f"ParityCTM: need lr > 0 and warmup_steps >= 0; got lr={lr}, warmup_steps={warmup_steps}"
            )
        check_ctm_fields(CTMConfig, ctm, "ParityCTM")
        config = CTMConfig(**ctm)  # written out: jsonargparse reads the flat fields off this call
        self.save_hyperparameters()  # flat, as before CTMConfig; under LightningCLI also its `_class_path`
        self.hparams.update(
            config.as_dict()
        )  # every CTM field, defaults included: plain values, not a dataclass
        self.seq_len, self.predict_with, self.token_encoding = seq_len, predict_with, token_encoding
        self.tick_selection = tick_selection
        if token_encoding == "additive":
            self.bit_embedding = nn.Embedding(2, d_embed)
            # Same scale as the bit embedding: with a small init the attention cannot tell positions apart
            # and training stalls at predicting the first running parities only.
            self.position_embedding = nn.Parameter(torch.randn(seq_len, d_embed))
        else:  # "joint": one learned vector per (position, bit value), row 2 * position + bit
            self.token_embedding = nn.Embedding(2 * seq_len, d_embed)
        self.ctm = ContinuousThoughtMachine(d_embed, [seq_len, 2], config)
        self.acc = nn.ModuleDict({f"{split}_acc": MulticlassAccuracy(2, average="micro") for split in SPLITS})
        self.seq_acc = nn.ModuleDict({f"{split}_seq_acc": MeanMetric() for split in SPLITS})

    def forward(self, bits: Tensor) -> CTMOutput:
        if bits.shape[-1] != self.seq_len:
            raise ValueError(
                f"ParityCTM was built for {self.seq_len} bits; got sequences of {bits.shape[-1]}"
            )
        return self.ctm(self.embed(bits))

    def embed(self, bits: Tensor) -> Tensor:
        """long [B, L] bits -> tokens [B, L, d_embed] (see ``token_encoding``)."""
        if self.token_encoding == "additive":
            return self.bit_embedding(bits) + self.position_embedding
        positions = torch.arange(self.seq_len, device=bits.device)
        return self.token_embedding(2 * positions + bits)

    def certainty(self, output: CTMOutput) -> Tensor:
        """The certainty that chooses ticks: [B, T] per example, or [B, T, L] per position."""
        if self.tick_selection == "position":
            return position_certainty(output.logits)
        return output.certainty

    def answer(self, output: CTMOutput, certainty: Tensor | None = None) -> Tensor:
        """Logits [B, L, 2] of the running parities, each read at the tick ``predict_with`` names
        (``certainty``: :meth:`certainty` of ``output`` where the caller already has it)."""
        if self.predict_with == "last":
            return output.prediction("last")
        certainty = self.certainty(output) if certainty is None else certainty
        return output.at_ticks(certainty.argmax(dim=1))

    def _step(self, batch: tuple[Tensor, Tensor], split: str) -> Tensor:
        bits, target = batch
        output = self(bits)
        certainty = self.certainty(output)
        loss = certainty_loss(output.logits, certainty, target)
        predicted = self.answer(output, certainty).argmax(dim=-1)
        accuracy = cast(Metric, self.acc[f"{split}_acc"])
        sequence_accuracy = cast(Metric, self.seq_acc[f"{split}_seq_acc"])
        accuracy(predicted.flatten(), target.flatten())
        sequence_accuracy((predicted == target).all(dim=1).float())
        on_step = split == "train"
        self.log(f"{split}/loss", loss, prog_bar=split != "test", on_step=on_step, on_epoch=not on_step)
        self.log(f"{split}/acc", accuracy, prog_bar=True, on_step=on_step, on_epoch=not on_step)
        self.log(f"{split}/seq_acc", sequence_accuracy, on_step=on_step, on_epoch=not on_step)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self.answer(self(batch[0])).argmax(dim=-1)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = min(self.hparams.warmup_steps, total)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(total - warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
