"""``SplitDataModule``: the train / val / test loader plumbing that every laart_lab data module shares.

A data module for plugin authors is then its data and nothing else::

    class MyData(SplitDataModule):
        def __init__(self, size: int = 1000, batch_size: int = 32, seed: int = 0, num_workers: int = 0):
            super().__init__(batch_size=batch_size, seed=seed, num_workers=num_workers)
            self.save_hyperparameters()
            self.size = size

        def make_splits(self) -> dict[str, Dataset]:
            return {"train": ..., "val": ..., "test": ...}  # map-style datasets, from self.seed

        def data_facts(self) -> dict[str, Any]:  # what the model takes from the data (vocab_size, ...)
            return {...}

What the base gives:

* :meth:`setup` calls :meth:`make_splits` once (a second ``setup`` keeps the splits);
* ``train_dataloader`` is shuffled by ``(seed, epoch)`` and **resumes mid-epoch** in the same order after
  an interrupted run (:func:`laart_lab.data.resumable.resumable_loader`); it shards itself under DDP;
* ``val_dataloader`` / ``test_dataloader`` read their split in order; ``predict_dataloader`` is the test's;
* every loader gets the module's ``num_workers`` (and ``persistent_workers`` where the subclass asks).

A module whose splits are not map-style datasets, or that needs a ``collate_fn`` or several test loaders,
overrides :meth:`split_loader` (one split's loader or loaders) and still calls :meth:`loader` for the
plumbing. ``data_facts`` is each module's own: the base declares none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from laart_lab.data.resumable import resumable_loader

SPLITS = ("train", "val", "test")
Loaders = DataLoader | list[DataLoader]


class SplitDataModule(LightningDataModule):
    """Train / val / test splits and their loaders (see the module docstring).

    Args:
        batch_size: examples per batch in every loader (per process).
        seed: seed of the data: the training order is a function of ``(seed, epoch)`` only.
        num_workers: ``DataLoader`` worker processes of every loader.
        persistent_workers: keep the workers between epochs (only with ``num_workers > 0``). Off unless a
            subclass turns it on: a collate function that draws random numbers in its workers would then
            continue its random stream across epochs instead of restarting it.
    """

    def __init__(self, batch_size: int, seed: int = 0, num_workers: int = 0, persistent_workers: bool = False) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"{type(self).__name__}: batch_size must be >= 1; got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"{type(self).__name__}: num_workers must be >= 0; got {num_workers}")
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.persistent_workers = persistent_workers
        self.splits: dict[str, Dataset] = {}

    # -- what a subclass provides ---------------------------------------------------------------
    def make_splits(self) -> dict[str, Dataset]:
        """The map-style datasets of ``"train"``, ``"val"`` and ``"test"`` (called once, by :meth:`setup`)."""
        return {}

    def split_loader(self, split: str) -> Loaders:
        """The loader of ``split`` (``"train"``, ``"val"`` or ``"test"``): by default :meth:`loader` over
        ``self.splits[split]``, shuffled and resumable for ``"train"``."""
        if split not in self.splits:
            raise RuntimeError(f"{type(self).__name__} has no {split!r} split; call setup() first")
        return self.loader(self.splits[split], train=split == "train")

    # -- the plumbing --------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = self.make_splits()

    def loader(
        self,
        dataset: Dataset,
        train: bool = False,
        lengths: Sequence[int] | None = None,
        length_pool: int = 0,
        **kwargs: Any,
    ) -> DataLoader:
        """A loader over ``dataset`` with this module's batch size and worker settings.

        ``train``: shuffled by ``(seed, epoch)`` and resumable mid-epoch; otherwise in order. With
        ``lengths`` (one per example) and ``length_pool`` > 1, training batches hold examples of like
        length (:func:`~laart_lab.data.resumable.length_pooled`), so they pad less.
        ``kwargs`` go to the ``DataLoader`` (``collate_fn``, ...).
        """
        options: dict[str, Any] = {
            "num_workers": self.num_workers,
            "persistent_workers": self.persistent_workers and self.num_workers > 0,
            **kwargs,
        }
        if train:
            return resumable_loader(
                self, dataset, self.batch_size, seed=self.seed, lengths=lengths, length_pool=length_pool, **options
            )
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, **options)

    def train_dataloader(self) -> Loaders:
        return self.split_loader("train")

    def val_dataloader(self) -> Loaders:
        return self.split_loader("val")

    def test_dataloader(self) -> Loaders:
        return self.split_loader("test")

    def predict_dataloader(self) -> Loaders:
        return self.test_dataloader()
