"""Synthetic long-range recall: answers that were given only *beyond* the model's context window.

Each document lists ``pairs`` key-value pairs in its first window (``k1 v1 k2 v2 ...``, padded with random
filler tokens), then runs for more windows made of ``queries_per_window`` *queries* (a key followed by its
value, ``k3 v3``) at random pair slots, the remaining slots filled with filler (``... f f k3 v3 f ...``; by
default every slot is a query). Predicting the value after a queried key is possible only by recalling the
listing (or an earlier query of the same key):

* a **near** query's key appeared earlier in the *same* window: local attention can answer it (this is
  what teaches the model the lookup, an induction head, in the first place);
* a **far** query's key last appeared in an *earlier* window: without a memory that outlives the
  window the best a model can do is guess, so accuracy stays at chance, ``1 / num_values``.

``test/acc`` (and ``val/acc``) is the accuracy on the far queries only (the ``score_mask``).

Stream layout (what a per-stream memory needs): each process holds ``batch_size`` streams, each an
endless sequence of documents of ``min_windows..max_windows`` windows. Row ``r`` of batch ``i`` is the
``i``-th window of stream ``r``; ``stream_start[r]`` is True when that window starts a new document (so
memory must be reset before it). Windows overlap by one token so targets never cross documents.
Batches are dicts: ``input``/``target`` long ``[batch, block_size]`` (``target`` is ``-100`` where the next
token is not a value when ``loss_on="values"``: filler and keys are unpredictable noise),
``stream_start`` bool ``[batch]``, ``score_mask`` bool ``[batch, block_size]``.

Vocabulary: ids ``[0, num_keys)`` keys, then ``num_values`` values, then ``num_filler`` filler symbols.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset

from laart_lab.data.base import SPLITS, SplitDataModule

__all__ = ["RecallDataModule", "RecallSpec", "recall_document", "RecallStreams"]

IGNORE = -100
LossOn = Literal["values", "all"]


@dataclass(frozen=True)
class RecallSpec:
    """Shape of the task (all plain ints)."""

    num_keys: int = 16
    num_values: int = 16
    num_filler: int = 8
    pairs: int = 8
    queries_per_window: int = 32
    block_size: int = 64
    min_windows: int = 3
    max_windows: int = 5

    def __post_init__(self) -> None:
        if self.pairs > self.num_keys:
            raise ValueError(f"recall: pairs ({self.pairs}) must be <= num_keys ({self.num_keys}): keys are distinct")
        if 2 * self.pairs > self.block_size:
            raise ValueError(
                f"recall: the listing of {self.pairs} pairs needs 2*pairs <= block_size ({self.block_size})"
            )
        if not 0 <= self.queries_per_window <= self.block_size // 2:
            raise ValueError(
                f"recall: queries_per_window must be in [0, block_size // 2], got {self.queries_per_window}"
            )
        if not 2 <= self.min_windows <= self.max_windows:
            raise ValueError(
                f"recall: need 2 <= min_windows <= max_windows, got {self.min_windows}, {self.max_windows}"
            )
        if min(self.num_keys, self.num_values, self.num_filler) < 1:
            raise ValueError("recall: num_keys, num_values and num_filler must be >= 1")

    @property
    def vocab_size(self) -> int:
        return self.num_keys + self.num_values + self.num_filler


def recall_document(rng: np.random.Generator, spec: RecallSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One document: ``tokens [n*W + 1]``, and over target positions ``[n*W]`` the far and near query masks.

    Target position ``t`` predicts ``tokens[t + 1]``; a query's value at ``p + 1`` is scored at ``t = p``.
    """
    w = spec.block_size
    n_windows = int(rng.integers(spec.min_windows, spec.max_windows + 1))
    length = n_windows * w + 1
    filler_base = spec.num_keys + spec.num_values
    tokens = filler_base + rng.integers(0, spec.num_filler, size=length)
    keys = rng.permutation(spec.num_keys)[: spec.pairs]
    values = spec.num_keys + rng.integers(0, spec.num_values, size=spec.pairs)
    far = np.zeros(length - 1, dtype=bool)
    near = np.zeros(length - 1, dtype=bool)
    start = int(rng.integers(0, w - 2 * spec.pairs + 1))
    tokens[start : start + 2 * spec.pairs : 2] = keys
    tokens[start + 1 : start + 2 * spec.pairs : 2] = values
    last_window = np.zeros(spec.pairs, dtype=np.int64)  # every key was listed in window 0
    for window in range(1, n_windows):
        slots = np.sort(rng.choice(w // 2, size=spec.queries_per_window, replace=False))
        for slot in slots:
            p = window * w + 2 * int(slot)
            i = int(rng.integers(0, spec.pairs))
            tokens[p], tokens[p + 1] = keys[i], values[i]
            (far if last_window[i] < window else near)[p] = True
            last_window[i] = window
    return tokens, far, near


class RecallStreams(IterableDataset):
    """Yields ready batches of stream-ordered windows (see the module docstring); ``batches`` per epoch.

    Sharded by rank: process ``rank`` draws its own streams from ``(seed, split, epoch, rank)``, so DDP
    ranks see different documents and each keeps its streams in order (no sampler may reorder them,
    which is why this is an iterable of whole batches).
    """

    def __init__(
        self, spec: RecallSpec, batch_size: int, batches: int, seed: int, split: int, loss_on: LossOn, fixed: bool
    ) -> None:
        super().__init__()
        self.spec, self.batch_size, self.batches = spec, batch_size, batches
        self.seed, self.split, self.loss_on, self.fixed = seed, split, loss_on, fixed
        self.epoch = 0

    def _rank(self) -> int:
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    def __len__(self) -> int:
        return self.batches

    def _stream(self, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, bool]]:
        w = self.spec.block_size
        while True:
            tokens, far, near = recall_document(rng, self.spec)
            target = tokens[1:].copy()
            if self.loss_on == "values":  # every value token (listing and queries): no window is all-ignored
                is_value = (target >= self.spec.num_keys) & (target < self.spec.num_keys + self.spec.num_values)
                target[~is_value] = IGNORE
            for j in range((len(tokens) - 1) // w):
                sl = slice(j * w, (j + 1) * w)
                yield np.stack([tokens[sl], target[sl], far[sl].astype(np.int64)]), j == 0

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch = 0 if self.fixed else self.epoch
        self.epoch += 1
        streams = [
            self._stream(np.random.default_rng([self.seed, self.split, epoch, self._rank(), s]))
            for s in range(self.batch_size)
        ]
        for _ in range(self.batches):
            rows, starts = zip(*(next(stream) for stream in streams))
            block = torch.from_numpy(np.stack(rows))  # [B, 3, W]
            yield {
                "input": block[:, 0].long(),
                "target": block[:, 1].long(),
                "stream_start": torch.tensor(starts, dtype=torch.bool),
                "score_mask": block[:, 2].bool(),
            }


class RecallDataModule(SplitDataModule):
    """The long-range recall task as stream-ordered windows (registered as ``recall``).

    Args:
        num_keys, num_values, num_filler, pairs, queries_per_window, block_size, min_windows,
            max_windows: see :class:`RecallSpec` and the module docstring.
        batch_size: streams per process (rows per batch).
        train_batches: batches per training epoch (new documents every epoch).
        val_batches, test_batches: batches of the fixed validation / test streams.
        loss_on: ``"values"`` trains only on predictable tokens (query values); ``"all"`` on every token.
        seed: seed of the documents (independent of the global seed).
    """

    def __init__(
        self,
        num_keys: int = 16,
        num_values: int = 16,
        num_filler: int = 8,
        pairs: int = 8,
        queries_per_window: int = 32,
        block_size: int = 64,
        min_windows: int = 3,
        max_windows: int = 5,
        batch_size: int = 32,
        train_batches: int = 500,
        val_batches: int = 20,
        test_batches: int = 50,
        loss_on: LossOn = "values",
        seed: int = 0,
    ) -> None:
        if loss_on not in ("values", "all"):
            raise ValueError(f"recall: loss_on must be 'values' or 'all', got {loss_on!r}")
        if min(batch_size, train_batches, val_batches, test_batches) < 1:
            raise ValueError("recall: batch_size, train_batches, val_batches and test_batches must be >= 1")
        super().__init__(batch_size=batch_size, seed=seed)
        self.save_hyperparameters()
        self.spec = RecallSpec(
            num_keys, num_values, num_filler, pairs, queries_per_window, block_size, min_windows, max_windows
        )
        self.loss_on = loss_on
        self.sizes = {"train": train_batches, "val": val_batches, "test": test_batches}
        self._train: RecallStreams | None = None

    def data_facts(self) -> dict[str, Any]:
        """``vocab_size`` and ``block_size`` for the model."""
        return {"vocab_size": self.spec.vocab_size, "block_size": self.spec.block_size}

    @property
    def chance(self) -> float:
        """Accuracy of guessing a value uniformly: what a model without long-range memory can reach."""
        return 1.0 / self.spec.num_values

    def split_loader(self, split: str) -> DataLoader:
        """Whole batches of stream-ordered windows (no sampler may reorder them): the training streams
        are kept, so that their epoch counter (new documents every epoch) survives and resumes."""
        index = SPLITS.index(split)
        dataset = RecallStreams(
            self.spec, self.batch_size, self.sizes[split], self.seed, index, self.loss_on, fixed=split != "train"
        )
        if split == "train":
            if self._train is None:
                self._train = dataset
            dataset = self._train
        return DataLoader(dataset, batch_size=None)

    def state_dict(self) -> dict[str, Any]:
        return {"train_epoch": self._train.epoch if self._train is not None else 0}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.split_loader("train")
        assert self._train is not None
        self._train.epoch = int(state_dict.get("train_epoch", 0))
