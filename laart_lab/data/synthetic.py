"""A synthetic task generated on the fly, for the quickstart and for plugin smoke tests.

*Marked token*: a sequence of ``seq_len`` random symbols in which exactly one is "marked" (its id is
shifted by ``num_symbols``); the label is the marked symbol. A model must attend to the one marked
position, so it exercises the attention backend, yet a small model learns it in a minute on a CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, TensorDataset

from laart_lab.data.resumable import resumable_loader


def marked_token_examples(count: int, seq_len: int, num_symbols: int, seed: int) -> TensorDataset:
    """``count`` examples: tokens ``[count, seq_len]`` (ids ``< 2 * num_symbols``) and labels ``[count]``."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, num_symbols, (count, seq_len), generator=generator)
    positions = torch.randint(0, seq_len, (count,), generator=generator)
    rows = torch.arange(count)
    labels = tokens[rows, positions].clone()
    tokens[rows, positions] += num_symbols
    return TensorDataset(tokens, labels)


class MarkedTokenDataModule(LightningDataModule):
    """Train/val/test splits of the marked-token task, each from its own seed."""

    def __init__(
        self,
        num_symbols: int = 16,
        seq_len: int = 32,
        train_size: int = 8192,
        val_size: int = 1024,
        test_size: int = 1024,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if num_symbols < 2 or seq_len < 1:
            raise ValueError(f"need num_symbols >= 2 and seq_len >= 1; got {num_symbols}, {seq_len}")
        self.save_hyperparameters()
        self.num_symbols, self.seq_len, self.batch_size, self.seed = num_symbols, seq_len, batch_size, seed
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.splits: dict[str, TensorDataset] = {}

    def data_facts(self) -> dict[str, Any]:
        return {"vocab_size": 2 * self.num_symbols, "num_classes": self.num_symbols}

    def setup(self, stage: str | None = None) -> None:
        for offset, (split, size) in enumerate(self.sizes.items()):
            if split not in self.splits:
                self.splits[split] = marked_token_examples(
                    size, self.seq_len, self.num_symbols, self.seed * 1000 + offset
                )

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        return DataLoader(self.splits[split], batch_size=self.batch_size, shuffle=shuffle)

    def train_dataloader(self) -> DataLoader:
        # shuffled by (seed, epoch) and resumable mid-epoch: an interrupted run continues the same order
        return resumable_loader(self, self.splits["train"], self.batch_size, seed=self.seed)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
