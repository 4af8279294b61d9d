"""Shuffled training data that resumes mid-epoch where a checkpoint stopped (same order, no repeats).

Lightning restores the loop state of an interrupted run, but a plain shuffled ``DataLoader`` restarts
its epoch from a new permutation. :func:`resumable_loader` builds one whose order is a function of
``(seed, epoch)`` only (a ``DistributedSampler``, which Lightning leaves in place under DDP and whose
epoch it sets), and which skips the batches the restored trainer already consumed in that epoch. The
loader reports itself resumable (``state_dict``) because its position is re-derived from the trainer.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def world() -> tuple[int, int]:
    """``(world size, rank)`` of this process: ``(1, 0)`` outside ``torch.distributed``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def length_pooled(ids: list[int], lengths: Sequence[int], batch_size: int, pool: int, rng: random.Random) -> list[int]:
    """``ids`` reordered so that each run of ``batch_size`` consecutive ids holds examples of like length.

    The ids are cut, in their (shuffled) order, into pools of ``pool`` batches; each pool is sorted by
    length and cut into batches, and the full batches are shuffled (``rng``). A short last batch stays
    last, so every batch but the last is full and a skip of whole batches stays aligned. Batches then pad
    little (a padded token costs as much as a real one), and which examples meet still changes every epoch.
    """
    size = batch_size * pool
    batches = []
    for start in range(0, len(ids), size):
        chunk = sorted(ids[start : start + size], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    short = [batches.pop()] if batches and len(batches[-1]) < batch_size else []
    rng.shuffle(batches)
    return [i for batch in batches + short for i in batch]


class SkippingSampler(DistributedSampler):
    """``DistributedSampler`` (shuffled by seed and epoch) that drops ``skip`` indices of epoch ``skip_epoch``;
    with ``lengths`` and ``pool``, each epoch's order is :func:`length_pooled` (a function of seed and epoch too)."""

    def __init__(
        self,
        dataset: Dataset,
        seed: int,
        skip: int = 0,
        skip_epoch: int = 0,
        lengths: Sequence[int] | None = None,
        batch_size: int = 1,
        pool: int = 0,
        **kwargs: Any,
    ) -> None:
        replicas, rank = world()
        super().__init__(dataset, num_replicas=replicas, rank=rank, shuffle=True, seed=seed, **kwargs)
        self.skip, self.skip_epoch = skip, skip_epoch
        self.lengths, self.batch_size, self.pool = lengths, batch_size, pool

    def __iter__(self) -> Iterator[int]:
        ids = list(super().__iter__())
        if self.lengths is not None and self.pool > 1:
            ids = length_pooled(
                ids, self.lengths, self.batch_size, self.pool, random.Random(f"{self.seed}/{self.epoch}")
            )
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


def resumable_loader(
    module: Any,
    dataset: Dataset,
    batch_size: int,
    seed: int,
    lengths: Sequence[int] | None = None,
    length_pool: int = 0,
    **kwargs: Any,
) -> DataLoader:
    """A shuffled training loader for ``dataset`` that continues where ``module``'s trainer stopped; with
    ``lengths`` (per example) and ``length_pool`` > 1, batches of like length (:func:`length_pooled`)."""
    epoch, batches = resume_position(module)
    sampler = SkippingSampler(
        dataset,
        seed=seed,
        skip=batches * batch_size,
        skip_epoch=epoch,
        lengths=lengths,
        batch_size=batch_size,
        pool=length_pool,
    )
    sampler.set_epoch(epoch)
    return ResumableLoader(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
