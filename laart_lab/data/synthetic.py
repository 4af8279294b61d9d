"""A synthetic task generated on the fly, for the quickstart and for plugin smoke tests.

*Marked token*: a sequence of ``seq_len`` random symbols in which exactly one is "marked" (its id is
shifted by ``num_symbols``); the label is the marked symbol. A model must attend to the one marked
position, so it exercises the attention backend, yet a small model learns it in a minute on a CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset

from laart_lab.data.base import SplitDataModule


def marked_token_examples(count: int, seq_len: int, num_symbols: int, seed: int) -> TensorDataset:
    """``count`` examples: tokens ``[count, seq_len]`` (ids ``< 2 * num_symbols``) and labels ``[count]``."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, num_symbols, (count, seq_len), generator=generator)
    positions = torch.randint(0, seq_len, (count,), generator=generator)
    rows = torch.arange(count)
    labels = tokens[rows, positions].clone()
    tokens[rows, positions] += num_symbols
    return TensorDataset(tokens, labels)


class MarkedTokenDataModule(SplitDataModule):
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
        super().__init__(batch_size=batch_size, seed=seed)
        if num_symbols < 2 or seq_len < 1:
            raise ValueError(f"need num_symbols >= 2 and seq_len >= 1; got {num_symbols}, {seq_len}")
        self.save_hyperparameters()
        self.num_symbols, self.seq_len = num_symbols, seq_len
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}

    def data_facts(self) -> dict[str, Any]:
        return {"vocab_size": 2 * self.num_symbols, "num_classes": self.num_symbols}

    def make_splits(self) -> dict[str, Dataset]:
        # split i is drawn from seed * 1000 + i; the training order is shuffled by (seed, epoch) (base class)
        return {
            split: marked_token_examples(size, self.seq_len, self.num_symbols, self.seed * 1000 + offset)
            for offset, (split, size) in enumerate(self.sizes.items())
        }
