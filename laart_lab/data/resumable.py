"""Shuffled training data that resumes mid-epoch where a checkpoint stopped (same order, no repeats).

Lightning restores the loop state of an interrupted run, but a plain shuffled ``DataLoader`` restarts
its epoch from a new permutation. :func:`resumable_loader` builds one whose order is a function of
``(seed, epoch)`` only (a ``DistributedSampler``, which Lightning leaves in place under DDP and whose
epoch it sets), and which skips the batches the restored trainer already consumed in that epoch. The
loader reports itself resumable (``state_dict``) because its position is re-derived from the trainer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def world() -> tuple[int, int]:
    """``(world size, rank)`` of this process: ``(1, 0)`` outside ``torch.distributed``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class SkippingSampler(DistributedSampler):
    """``DistributedSampler`` (shuffled by seed and epoch) that drops ``skip`` indices of epoch ``skip_epoch``."""

    def __init__(self, dataset: Dataset, seed: int, skip: int = 0, skip_epoch: int = 0, **kwargs: Any) -> None:
        replicas, rank = world()
        super().__init__(dataset, num_replicas=replicas, rank=rank, shuffle=True, seed=seed, **kwargs)
        self.skip, self.skip_epoch = skip, skip_epoch

    def __iter__(self) -> Iterator[int]:
        ids = list(super().__iter__())
        if self.skip and self.epoch == self.skip_epoch:
            ids = ids[self.skip :]
        return iter(ids)

    # __len__ stays the full epoch's: Lightning counts a resumed epoch's batches from the restored progress
    # (it ends the epoch when `ready` reaches len(loader)), as with any stateful loader


class ResumableLoader(DataLoader):
    """A ``DataLoader`` that tells Lightning it resumes mid-epoch (its sampler skips what was consumed).

    Its position is not stored here: the data module re-derives it from the restored trainer progress
    (:func:`resume_position`) when it builds the loader, so the state is empty.
    """

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        return None


def resume_position(module: Any) -> tuple[int, int]:
    """``(epoch, batches consumed in it)`` of the trainer attached to ``module`` (``(0, 0)`` when fresh)."""
    try:
        trainer = getattr(module, "trainer", None)
    except RuntimeError:  # a LightningModule not attached to a trainer
        trainer = None
    if trainer is None:
        return 0, 0
    loop = trainer.fit_loop
    return int(loop.epoch_progress.current.processed), int(loop.epoch_loop.batch_progress.current.processed)


def resumable_loader(module: Any, dataset: Dataset, batch_size: int, seed: int, **kwargs: Any) -> DataLoader:
    """A shuffled training loader for ``dataset`` that continues where ``module``'s trainer stopped."""
    epoch, batches = resume_position(module)
    sampler = SkippingSampler(dataset, seed=seed, skip=batches * batch_size, skip_epoch=epoch)
    sampler.set_epoch(epoch)
    return ResumableLoader(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
