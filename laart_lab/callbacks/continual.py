"""Callbacks for staged (continual) training with a :class:`~laart_lab.data.continual.StagedDataModule`.

* :class:`ContinualMatrix` (``continual_matrix``): before training and after every stage, evaluates the
  model on every task's validation and test sets: the continual-learning matrix. Logs
  ``continual/<split>_<metric>_task<j>`` at each stage end, plus the model's concept count and the
  growth callbacks' concepts grown / merged / retired in that stage (``continual/concepts``,
  ``continual/grown``, ``continual/merges``, ``continual/retired``); at the end of fit it computes the
  metrics of :mod:`laart_lab.continual_metrics` and writes everything to ``continual.json`` in the
  logger's folder (or ``out``).
* :class:`StageConceptGrowth` (``stage_concept_growth``): grows a growable SLRM's invented concepts when
  a new stage starts, and (``think``) consolidates them when a stage ends: merges concepts whose boxes
  coincide and retires concepts no named pair composes to. (``CharLM``'s concept layer has its own
  step-scheduled callback, ``concept_growth``.)
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from laart_lab.continual_metrics import continual_metrics

__all__ = ["ContinualMatrix", "StageConceptGrowth", "evaluate_task"]

Metric = Literal["auto", "acc", "bpc"]


def _staged(trainer: Trainer) -> Any:
    from laart_lab.data.continual import StagedDataModule

    datamodule = getattr(trainer, "datamodule", None)
    if not isinstance(datamodule, StagedDataModule):
        raise ValueError(
            "the continual callbacks need a staged data module (continual_text, continual_kinship); "
            f"this run's data is {type(datamodule).__name__}"
        )
    return datamodule


def _metric_of(model: LightningModule, metric: Metric) -> Literal["acc", "bpc"]:
    if metric != "auto":
        return metric
    return "acc" if hasattr(model, "reasoner") else "bpc"


@torch.no_grad()
def evaluate_task(model: LightningModule, loader: Any, metric: Literal["acc", "bpc"], datamodule: Any = None) -> float:
    """Accuracy (a reasoning model: ``model(batch).logits``) or bits per token (a ``CharLM``) over ``loader``."""
    was_training = model.training
    model.eval()
    reset = getattr(model, "_reset_memory", None)
    if callable(reset):
        reset()
    total, count = 0.0, 0
    device = model.device
    try:
        for batch in loader:
            if datamodule is not None:
                batch = datamodule.transfer_batch_to_device(batch, device, 0)
            if metric == "acc":
                logits = model(batch).logits
                total += float((logits.argmax(-1) == batch.target).sum())
                count += int(batch.target.numel())
            else:
                # CharLM's own loss (it also resets per-stream memory where a stream starts)
                _, lm_loss, _ = model._loss_and_logits(batch)  # type: ignore[operator]
                weight = int((batch["target"] != -100).sum())
                total += float(lm_loss) * weight / math.log(2.0)
                count += weight
    finally:
        if callable(reset):
            reset()
        model.train(was_training)
    return total / max(count, 1)


def _concept_count(model: LightningModule) -> int | None:
    """Active concepts of the model's growable parts (concept layers, growable SLRM), None if it has none."""
    from laart_lab.memory.concept_growth import ConceptLayer

    counts: list[int] = [m.num_active for m in model.modules() if isinstance(m, ConceptLayer)]
    counts += [int(m.num_active_concepts) for m in model.modules() if getattr(m, "concept_active", None) is not None]  # type: ignore[arg-type]
    return sum(counts) if counts else None


def _growth_counters(trainer: Trainer) -> dict[str, int]:
    """Summed ``grown``/``merges``/``retired`` counters of the growth callbacks of this run."""
    totals = {"grown": 0, "merges": 0, "retired": 0}
    for callback in trainer.callbacks:  # type: ignore[attr-defined]
        counters = getattr(callback, "counters", None)
        if isinstance(counters, dict):
            for key in totals:
                totals[key] += int(counters.get(key, 0))
    return totals


class ContinualMatrix(Callback):
    """The stage-by-stage evaluation matrix of a staged run (see the module docstring).

    Args:
        metric: ``"acc"``, ``"bpc"``, or ``"auto"`` (accuracy for reasoning models, else bits per token).
        splits: which evaluation splits to fill a matrix for (model choices use ``val``; reports ``test``).
        out: where to write the JSON (default: ``continual.json`` in the first logger's folder; none
            without a logger).
    """

    def __init__(
        self, metric: Metric = "auto", splits: tuple[str, ...] = ("val", "test"), out: str | None = None
    ) -> None:
        super().__init__()
        if metric not in ("auto", "acc", "bpc"):
            raise ValueError(f"continual_matrix: metric must be 'auto', 'acc' or 'bpc', got {metric!r}")
        if not splits or any(s not in ("val", "test") for s in splits):
            raise ValueError(f"continual_matrix: splits are 'val' and/or 'test', got {splits}")
        self.metric, self.splits, self.out = metric, tuple(splits), out
        self.initial: dict[str, list[float]] = {}
        self.matrix: dict[str, list[list[float]]] = {s: [] for s in self.splits}
        self.stages: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {}
        self._stage_started = 0.0
        self._counters_before = {"grown": 0, "merges": 0, "retired": 0}

    def _row(self, trainer: Trainer, model: LightningModule, split: str) -> list[float]:
        datamodule = _staged(trainer)
        metric = _metric_of(model, self.metric)
        return [
            evaluate_task(model, datamodule.eval_loader(task, split), metric, datamodule)
            for task in range(len(datamodule.task_names))
        ]

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = _staged(trainer)
        datamodule.setup("fit")
        if not self.initial:
            self.initial = {split: self._row(trainer, pl_module, split) for split in self.splits}
        self._stage_started = time.perf_counter()
        self._counters_before = _growth_counters(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = _staged(trainer)
        epoch = trainer.current_epoch
        if not datamodule.is_stage_end(epoch):
            return
        stage = datamodule.stage_of_epoch(epoch)
        # stage-end consolidation (StageConceptGrowth) runs in its own epoch-end hook: let it finish first
        for callback in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, StageConceptGrowth):
                callback.consolidate_if_due(trainer, pl_module)
        seconds = time.perf_counter() - self._stage_started
        counters = _growth_counters(trainer)
        delta = {k: counters[k] - self._counters_before[k] for k in counters}
        self._counters_before = counters
        record: dict[str, Any] = {
            "stage": stage,
            "task": datamodule.stage_tasks[stage],
            "step": trainer.global_step,
            "train_seconds": round(seconds, 2),
            "concepts": _concept_count(pl_module),
            **delta,
        }
        metric = _metric_of(pl_module, self.metric)
        logged: dict[str, float] = {"continual/stage": float(stage)}
        for split in self.splits:
            row = self._row(trainer, pl_module, split)
            self.matrix[split].append(row)
            record[split] = row
            logged.update({f"continual/{split}_{metric}_task{j}": v for j, v in enumerate(row)})
        if record["concepts"] is not None:
            logged["continual/concepts"] = float(record["concepts"])
        logged.update({f"continual/{k}": float(v) for k, v in delta.items()})
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(logged, step=trainer.global_step)
        self.stages.append(record)
        self._stage_started = time.perf_counter()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.stages:
            return
        datamodule = _staged(trainer)
        metric = _metric_of(pl_module, self.metric)
        tasks = [datamodule.stage_tasks[s["stage"]] for s in self.stages]
        self.result = {
            "metric": metric,
            "higher_is_better": metric == "acc",
            "task_names": datamodule.task_names,
            "stage_tasks": tasks,
            "initial": self.initial,
            "matrix": self.matrix,
            "stages": self.stages,
            "metrics": {
                split: continual_metrics(self.matrix[split], tasks, self.initial.get(split), metric == "acc")
                for split in self.splits
            },
        }
        path = Path(self.out) if self.out else None
        if path is None and trainer.loggers and trainer.loggers[0].log_dir:
            path = Path(trainer.loggers[0].log_dir) / "continual.json"
        if path is not None and trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.result, indent=1))

    def state_dict(self) -> dict[str, Any]:
        return {"initial": self.initial, "matrix": self.matrix, "stages": self.stages}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.initial = state_dict.get("initial", {})
        self.matrix = state_dict.get("matrix", {s: [] for s in self.splits})
        self.stages = state_dict.get("stages", [])


def _zero_optimizer_rows(trainer: Trainer, params: list[torch.nn.Parameter], rows: torch.Tensor) -> None:
    """Zero the per-row optimizer state (Adam moments) of ``rows`` of ``params`` (reinitialised rows)."""
    if rows.numel() == 0:
        return
    for optimizer in trainer.optimizers:
        for param in params:
            for value in optimizer.state.get(param, {}).values():
                if torch.is_tensor(value) and value.shape == param.shape:
                    value[rows.to(value.device)] = 0


class StageConceptGrowth(Callback):
    """Grows a growable SLRM's invented concepts at each new stage and consolidates them at each stage end.

    Args:
        grow_per_stage: concepts activated when a stage after the first starts (bounded by free slots).
        think: run the thinking phase (merge + retire) at the end of every stage.
        merge_threshold: concepts whose boxes contain each other above this (normalised, both ways) merge.
        retire_below: concepts fewer than this many named pairs compose to are retired.
    """

    def __init__(
        self, grow_per_stage: int = 4, think: bool = True, merge_threshold: float = 0.9, retire_below: int = 1
    ) -> None:
        super().__init__()
        if grow_per_stage < 0 or retire_below < 0:
            raise ValueError("stage_concept_growth: grow_per_stage and retire_below must be >= 0")
        self.grow_per_stage, self.think = grow_per_stage, think
        self.merge_threshold, self.retire_below = merge_threshold, retire_below
        self.counters = {"grown": 0, "merges": 0, "retired": 0, "thinking_phases": 0}
        self._consolidated_epoch = -1

    @staticmethod
    def _growable(pl_module: LightningModule) -> list[Any]:
        found = [m for m in pl_module.modules() if getattr(m, "concept_active", None) is not None]
        if not found:
            raise ValueError(
                "stage_concept_growth: the model has no growable concepts; build the SLRM with "
                "initial_concepts (model.init_args.reasoner.init_args.initial_concepts)"
            )
        return found

    def _log(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = _staged(trainer)
        epoch = trainer.current_epoch
        if epoch == 0 or not datamodule.is_stage_start(epoch):
            return
        for module in self._growable(pl_module):
            rows = module.grow_concepts(self.grow_per_stage)
            _zero_optimizer_rows(trainer, [module.box_min, module.box_log_side], rows)
            self.counters["grown"] += len(rows)
            self._log(
                trainer, {"concepts/grown": float(len(rows)), "concepts/count": float(module.num_active_concepts)}
            )

    def consolidate_if_due(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The thinking phase at a stage's last epoch (once per epoch, whichever hook calls it first)."""
        datamodule = _staged(trainer)
        epoch = trainer.current_epoch
        if not self.think or epoch == self._consolidated_epoch or not datamodule.is_stage_end(epoch):
            return
        self._consolidated_epoch = epoch
        for module in self._growable(pl_module):
            merged = module.merge_concepts(self.merge_threshold)
            retired = module.retire_concepts(self.retire_below) if self.retire_below > 0 else []
            self.counters["merges"] += len(merged)
            self.counters["retired"] += len(retired)
            self.counters["thinking_phases"] += 1
            self._log(
                trainer,
                {
                    "concepts/merges": float(len(merged)),
                    "concepts/retired": float(len(retired)),
                    "concepts/count": float(module.num_active_concepts),
                },
            )

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.consolidate_if_due(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"counters": dict(self.counters), "consolidated_epoch": self._consolidated_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.counters.update(state_dict.get("counters", {}))
        self._consolidated_epoch = int(state_dict.get("consolidated_epoch", -1))
