"""Cumulative parity of random bit sequences: the task the CTM authors use to show thinking over ticks.

An example is ``L`` random bits; its target is the running parity at every position
(``target[i] = (bits[0] + ... + bits[i]) mod 2``), so the model must produce ``L`` answers, the last
of which is the parity of the whole sequence. Accuracy is per position (see :mod:`laart_ctm.parity`).

Validation and test sequences are held out: any training sequence equal to one of them is redrawn,
so a model cannot score by memorising (with 16 bits there are only 65,536 distinct sequences). For
``L > 62`` sequences are not packed into integers and not filtered; a collision then has
probability below ``2**-62`` per pair.
"""

from __future__ import annotations

from typing import Any

import torch
from laart_lab.data.resumable import resumable_loader
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

MAX_PACKED_BITS = 62


def cumulative_parity(bits: Tensor) -> Tensor:
    """long [..., L] bits -> long [..., L] running parity."""
    return bits.cumsum(dim=-1) % 2


def _codes(bits: Tensor) -> Tensor:
    weights = 2 ** torch.arange(bits.shape[-1], dtype=torch.long)
    return (bits * weights).sum(dim=-1)


def sample_bits(count: int, length: int, generator: torch.Generator, exclude: Tensor | None = None) -> Tensor:
    """``count`` random sequences ``[count, length]``, none equal to a row of ``exclude`` (L <= 62)."""
    bits = torch.randint(0, 2, (count, length), generator=generator)
    if exclude is None or exclude.numel() == 0 or length > MAX_PACKED_BITS:
        return bits
    if 2**length <= len(torch.unique(_codes(exclude))):
        raise ValueError(
            f"held-out sets cover all {2**length} sequences of length {length}: shrink val_size/test_size"
        )
    banned = torch.unique(_codes(exclude))
    while True:
        clash = torch.isin(_codes(bits), banned)
        if not clash.any():
            return bits
        bits[clash] = torch.randint(0, 2, (int(clash.sum()), length), generator=generator)


class ParityDataModule(LightningDataModule):
    """Batches ``(bits long[B, L], cumulative parity long[B, L])``; ``seq_len`` is a data fact."""

    def __init__(
        self,
        seq_len: int = 16,
        train_size: int = 100_000,
        val_size: int = 2_000,
        test_size: int = 10_000,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if seq_len < 1:
            raise ValueError(f"parity: seq_len must be >= 1 (the CTM paper uses 16/32/64); got {seq_len}")
        for name, value in (("train_size", train_size), ("val_size", val_size), ("test_size", test_size)):
            if value < 1:
                raise ValueError(f"parity: {name} must be >= 1; got {value}")
        if batch_size < 1:
            raise ValueError(f"parity: batch_size must be >= 1; got {batch_size}")
        self.save_hyperparameters()
        self.seq_len, self.batch_size, self.seed, self.num_workers = seq_len, batch_size, seed, num_workers
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.splits: dict[str, TensorDataset] = {}

    def data_facts(self) -> dict[str, Any]:
        return {"seq_len": self.seq_len}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        generator = torch.Generator().manual_seed(self.seed)
        held_out = {
            split: sample_bits(self.sizes[split], self.seq_len, generator) for split in ("val", "test")
        }
        train = sample_bits(self.sizes["train"], self.seq_len, generator, torch.cat(list(held_out.values())))
        for split, bits in {"train": train, **held_out}.items():
            self.splits[split] = TensorDataset(bits, cumulative_parity(bits))

    def _loader(self, split: str) -> DataLoader:
        return DataLoader(self.splits[split], batch_size=self.batch_size, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        # order = f(seed, epoch), and a run resumed from an interrupt checkpoint continues mid-epoch
        train, workers = self.splits["train"], self.num_workers
        return resumable_loader(self, train, self.batch_size, self.seed, num_workers=workers, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
