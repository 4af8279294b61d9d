"""``ConceptGrowth``: when to grow a :class:`~laart_lab.memory.ConceptLayer` and when to consolidate it.

The schedule comes from the recipe, in optimizer steps (``trainer.global_step``):

* every ``grow_every`` steps (from ``start_step`` until ``stop_growth_step``) a **growth check**: if the
  share of poorly explained hidden states since the last check is at least ``min_novelty``, up to
  ``max_new`` concepts are seeded at k-means centres of those states;
* every ``think_every`` steps a **thinking phase** (consolidation, no new input needed): near-duplicate
  concepts are merged and concepts no hidden state used since the last phase are retired.

Training stays correct across these changes:

* the optimizer keeps its state for every row that did not change; rows that were (re)initialised,
  merged into or retired get their per-row state (Adam moments) zeroed, so a new concept starts
  from a clean slate instead of inheriting a retired one's momentum;
* under DDP every rank takes the same decision: statistics are summed over ranks (``all_reduce``),
  the poorly explained states of all ranks are gathered, the (deterministic) k-means runs on the
  same data everywhere, and the concept parameters are then broadcast from rank 0 all the same;
* everything that drives a decision is in a checkpoint: the layer's statistics (its extra state),
  the concepts themselves, ``global_step``, and this callback's counters (:meth:`state_dict`).

Logged at each phase's own step (through every logger's ``log_metrics``, so phases are not thinned out by
``log_every_n_steps``): ``concepts/count``, ``concepts/novelty_rate``, ``concepts/grown`` per growth check;
``concepts/merges``, ``concepts/retired`` per thinking phase; and the TensorBoard histogram ``concepts/usage``
of the active concepts' usage shares.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

from laart_lab.memory.concept_growth import ConceptLayer

__all__ = ["ConceptGrowth"]


# ---------------------------------------------------------------------------------- collectives
def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum over ranks (a copy; identity when not distributed)."""
    tensor = tensor.clone()
    if _distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_rows(rows: Tensor, max_rows: int) -> Tensor:
    """Concatenate every rank's ``[n_r, dim]`` rows (``n_r <= max_rows``) in rank order."""
    if not _distributed():
        return rows
    world = dist.get_world_size()
    padded = rows.new_zeros(max_rows, rows.shape[1])
    padded[: rows.shape[0]] = rows
    counts = torch.tensor([rows.shape[0]], device=rows.device)
    all_counts = [torch.zeros_like(counts) for _ in range(world)]
    all_rows = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(all_counts, counts)
    dist.all_gather(all_rows, padded)
    return torch.cat([r[: int(c)] for r, c in zip(all_rows, all_counts)])


def broadcast_concepts(layer: ConceptLayer) -> None:
    """Make every rank hold rank 0's concepts exactly (parameters and masks)."""
    if not _distributed():
        return
    for tensor in (layer.concepts.data, layer.values.data, layer.active, layer.fresh):
        dist.broadcast(tensor, src=0)


def reset_optimizer_rows(trainer: Trainer, layer: ConceptLayer, rows: Tensor) -> None:
    """Zero the per-row optimizer state (e.g. Adam moments) of ``rows`` of the concept parameters."""
    if rows.numel() == 0:
        return
    for optimizer in trainer.optimizers:
        for param in (layer.concepts, layer.values):
            for value in optimizer.state.get(param, {}).values():
                if torch.is_tensor(value) and value.shape == param.shape:
                    value[rows.to(value.device)] = 0


# ---------------------------------------------------------------------------------- callback
class ConceptGrowth(Callback):
    """Grows and consolidates every :class:`ConceptLayer` of the model on a step schedule.

    Args:
        grow_every: optimizer steps between growth checks (0 disables growth).
        think_every: optimizer steps between thinking (consolidation) phases (0 disables them).
        start_step: no growth before this step (the first hidden states are not meaningful yet).
        stop_growth_step: no growth from this step on (None: never stop); thinking continues.
        max_new: most concepts added per growth check (also bounded by free capacity).
        min_novelty: grow only when at least this share of hidden states was poorly explained.
        merge_threshold: concepts with cosine similarity above this are merged.
        retire_below: concepts whose usage share since the last phase is at most this are retired.
        kmeans_iters: iterations of the seeding k-means.
        histogram: log the usage histogram at each thinking phase (TensorBoard logger only).
    """

    def __init__(
        self,
        grow_every: int = 100,
        think_every: int = 500,
        start_step: int = 0,
        stop_growth_step: int | None = None,
        max_new: int = 4,
        min_novelty: float = 0.05,
        merge_threshold: float = 0.9,
        retire_below: float = 0.0,
        kmeans_iters: int = 10,
        histogram: bool = True,
    ) -> None:
        super().__init__()
        if grow_every < 0 or think_every < 0 or max_new < 0:
            raise ValueError("ConceptGrowth: grow_every, think_every and max_new must be >= 0")
        if not 0.0 <= min_novelty <= 1.0:
            raise ValueError(f"ConceptGrowth: min_novelty is a share in [0, 1], got {min_novelty}")
        self.grow_every, self.think_every = grow_every, think_every
        self.start_step, self.stop_growth_step = start_step, stop_growth_step
        self.max_new, self.min_novelty = max_new, min_novelty
        self.merge_threshold, self.retire_below = merge_threshold, retire_below
        self.kmeans_iters, self.histogram = kmeans_iters, histogram
        self.counters = {"growth_checks": 0, "grown": 0, "thinking_phases": 0, "merges": 0, "retired": 0}
        self.last_step = -1

    # ----------------------------------------------------------------- hooks
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == self.last_step:  # gradient accumulation: act once per optimizer step
            return
        self.last_step = step
        layers = [m for m in pl_module.modules() if isinstance(m, ConceptLayer)]
        for index, layer in enumerate(layers):
            prefix = "concepts" if len(layers) == 1 else f"concepts{index}"
            if self._growth_due(step):
                self.grow(trainer, layer, prefix)
            if self.think_every and step > 0 and step % self.think_every == 0:
                self.think(trainer, layer, prefix)

    def _growth_due(self, step: int) -> bool:
        if not self.grow_every or step <= 0 or step < self.start_step or step % self.grow_every:
            return False
        return self.stop_growth_step is None or step < self.stop_growth_step

    # ----------------------------------------------------------------- phases
    def grow(self, trainer: Trainer, layer: ConceptLayer, prefix: str = "concepts") -> int:
        """One growth check with statistics summed over ranks; returns how many concepts were added."""
        device = layer.concepts.device
        seen = float(all_reduce_sum(layer.seen.to(device)))
        novel = float(all_reduce_sum(layer.novel.to(device)))
        rate = novel / seen if seen > 0 else 0.0
        added = 0
        if rate >= self.min_novelty and self.max_new > 0 and layer.num_active < layer.capacity:
            candidates = all_gather_rows(layer.poorly_explained().to(device), layer.reservoir_size)
            if candidates.shape[0]:
                rows = layer.grow(candidates, self.max_new, self.kmeans_iters)
                broadcast_concepts(layer)
                reset_optimizer_rows(trainer, layer, rows)
                added = int(rows.numel())
        layer.clear_novelty()
        layer.clear_reservoir()
        self.counters["growth_checks"] += 1
        self.counters["grown"] += added
        self._log(
            trainer, {f"{prefix}/count": layer.num_active, f"{prefix}/novelty_rate": rate, f"{prefix}/grown": added}
        )
        return added

    def think(self, trainer: Trainer, layer: ConceptLayer, prefix: str = "concepts") -> None:
        """One thinking phase: merge near-duplicates and retire unused concepts (same on every rank)."""
        device = layer.concepts.device
        usage = all_reduce_sum(layer.usage.to(device))
        seen = float(all_reduce_sum(layer.usage_seen.to(device)))
        share = (usage / seen).float() if seen > 0 else torch.zeros_like(usage, dtype=torch.float32)
        result = layer.consolidate(share, self.merge_threshold, self.retire_below)
        broadcast_concepts(layer)
        reset_optimizer_rows(trainer, layer, result.changed)
        self._log_histogram(trainer, share[layer.active].detach().cpu(), prefix)
        layer.clear_usage()
        self.counters["thinking_phases"] += 1
        self.counters["merges"] += result.merges
        self.counters["retired"] += result.retired
        self._log(
            trainer,
            {
                f"{prefix}/merges": result.merges,
                f"{prefix}/retired": result.retired,
                f"{prefix}/count": layer.num_active,
            },
        )

    @staticmethod
    def _log(trainer: Trainer, metrics: dict[str, float]) -> None:
        """Every phase is logged at its step (not thinned by ``log_every_n_steps``: phases are rare)."""
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({k: float(v) for k, v in metrics.items()}, step=trainer.global_step)

    def _log_histogram(self, trainer: Trainer, values: Tensor, prefix: str) -> None:
        if not self.histogram or not trainer.is_global_zero or values.numel() == 0:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_histogram(f"{prefix}/usage", values, trainer.global_step)

    # ----------------------------------------------------------------- checkpointing
    def state_dict(self) -> dict[str, Any]:
        return {"counters": dict(self.counters), "last_step": self.last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.counters.update(state_dict.get("counters", {}))
        self.last_step = int(state_dict.get("last_step", -1))
