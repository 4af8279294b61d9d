"""``CTMTickStats`` (registered as ``ctm_ticks``): what the CTM does over its internal ticks.

At the end of each validation and test epoch it writes

* the accuracy of the prediction at every tick: scalars ``ctm_ticks/{stage}_acc_t{t}`` (any logger)
  and, with a TensorBoard logger, a figure ``ctm_ticks/{stage}_acc_by_tick`` with one curve per
  data loader (CLUTRR: one per test k);
* the distribution of the tick at which each example is most certain: a TensorBoard histogram
  ``ctm_ticks/{stage}_most_certain_tick`` and the scalar ``ctm_ticks/{stage}_mean_most_certain_tick``;
* ``ctm_ticks/{stage}_acc_most_certain``: accuracy at each example's most-certain tick.

It works with any LightningModule that contains a :class:`laart_ctm.core.ContinuousThoughtMachine`
(``ParityCTM``, or laart_lab's ``RelationReasoning`` with the ``ctm`` reasoner): a forward hook on
the core captures the per-tick outputs, and the targets are read from the batch (a
``ReasoningBatch``'s ``target``, the second item of a tuple, or a mapping's ``"target"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

from laart_ctm.core import ContinuousThoughtMachine, CTMOutput


def batch_targets(batch: Any) -> Tensor | None:
    """The targets of a batch in the layouts used by laart_lab data modules, or ``None``."""
    target = getattr(batch, "target", None)
    if isinstance(target, Tensor):
        return target
    if isinstance(batch, (tuple, list)) and len(batch) >= 2 and isinstance(batch[1], Tensor):
        return batch[1]
    if isinstance(batch, Mapping) and isinstance(batch.get("target"), Tensor):
        return batch["target"]
    return None


class TickAccumulator:
    """Per-tick correct counts and most-certain-tick counts of one data loader."""

    def __init__(self) -> None:
        self.correct: Tensor | None = None  # [T] summed per-example accuracy at each tick
        self.correct_certain = 0.0
        self.ticks: list[Tensor] = []
        self.examples = 0

    def add(self, output: CTMOutput, target: Tensor) -> None:
        logits = output.logits.detach()
        batch, ticks = logits.shape[:2]
        target = target.to(logits.device)
        right = (logits.argmax(dim=-1) == target.unsqueeze(1)).float().reshape(batch, ticks, -1).mean(dim=2)
        self.correct = (
            right.sum(dim=0).cpu() if self.correct is None else self.correct + right.sum(dim=0).cpu()
        )
        certain = output.most_certain_tick().detach()
        self.correct_certain += float(right.gather(1, certain.unsqueeze(1)).sum())
        self.ticks.append(certain.cpu())
        self.examples += batch

    def accuracy_by_tick(self) -> Tensor:
        assert self.correct is not None
        return self.correct / self.examples


class CTMTickStats(Callback):
    """Logs accuracy by tick and the most-certain-tick distribution of every CTM in the module."""

    def __init__(self, stages: list[str] | None = None) -> None:
        stages = ["val", "test"] if stages is None else list(stages)
        unknown = sorted(set(stages) - {"val", "test"})
        if unknown:
            raise ValueError(f"ctm_ticks: stages must be among 'val', 'test'; got {unknown}")
        self.stages = stages
        self._handles: list[Any] = []
        self._last: CTMOutput | None = None
        self._accumulators: dict[int, TickAccumulator] = {}
        self.last_summary: dict[str, dict[str, Any]] = {}  #: the latest :meth:`summary` per stage

    # -- capturing ------------------------------------------------------------------------
    def _capture(self, module: Any, args: Any, output: CTMOutput) -> None:
        self._last = output

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._handles:
            return
        cores = [module for module in pl_module.modules() if isinstance(module, ContinuousThoughtMachine)]
        self._handles = [core.register_forward_hook(self._capture) for core in cores]

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _collect(self, trainer: Trainer, stage: str, batch: Any, dataloader_idx: int) -> None:
        output, self._last = self._last, None
        target = batch_targets(batch)
        if stage not in self.stages or trainer.sanity_checking or output is None or target is None:
            return
        self._accumulators.setdefault(dataloader_idx, TickAccumulator()).add(output, target)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._collect(trainer, "val", batch, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, "test", batch, dataloader_idx)

    # -- reporting ------------------------------------------------------------------------
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._report(trainer, "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._report(trainer, "test")

    def summary(self) -> dict[str, Any]:
        """Accuracy by tick (all loaders pooled), accuracy at the most-certain tick, most-certain ticks."""
        accumulators = [acc for acc in self._accumulators.values() if acc.examples]
        examples = sum(acc.examples for acc in accumulators)
        correct = torch.stack([acc.correct for acc in accumulators if acc.correct is not None]).sum(dim=0)
        return {
            "acc_by_tick": (correct / examples).tolist(),
            "acc_most_certain": sum(acc.correct_certain for acc in accumulators) / examples,
            "most_certain_tick": torch.cat([tick for acc in accumulators for tick in acc.ticks]),
        }

    def _report(self, trainer: Trainer, stage: str) -> None:
        if not any(acc.examples for acc in self._accumulators.values()):
            self._accumulators = {}
            return
        summary = self.summary()
        self.last_summary[stage] = summary
        step = trainer.global_step
        metrics = {f"ctm_ticks/{stage}_acc_t{t:02d}": acc for t, acc in enumerate(summary["acc_by_tick"])}
        metrics[f"ctm_ticks/{stage}_acc_most_certain"] = summary["acc_most_certain"]
        metrics[f"ctm_ticks/{stage}_mean_most_certain_tick"] = float(
            summary["most_certain_tick"].float().mean()
        )
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
            if isinstance(logger, TensorBoardLogger):
                self._tensorboard(logger, stage, step, summary, trainer)
        self._accumulators = {}

    def _loader_labels(self, trainer: Trainer, stage: str) -> dict[int, str]:
        ks = getattr(getattr(trainer, "datamodule", None), f"{stage}_ks", None)
        labels = {}
        for index in self._accumulators:
            labels[index] = (
                f"k={ks[index]}" if isinstance(ks, (list, tuple)) and index < len(ks) else f"loader {index}"
            )
        return labels

    def _tensorboard(
        self, logger: TensorBoardLogger, stage: str, step: int, summary: dict, trainer: Trainer
    ) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ticks = len(summary["acc_by_tick"])
        experiment = logger.experiment
        experiment.add_histogram(
            f"ctm_ticks/{stage}_most_certain_tick",
            summary["most_certain_tick"].float(),
            step,
            bins=torch.arange(ticks + 1, dtype=torch.float64).numpy() - 0.5,
        )
        figure, axis = plt.subplots(figsize=(6, 4))
        labels = self._loader_labels(trainer, stage)
        for index, accumulator in sorted(self._accumulators.items()):
            if accumulator.examples:
                axis.plot(
                    range(1, ticks + 1),
                    accumulator.accuracy_by_tick().numpy(),
                    marker=".",
                    label=labels[index],
                )
        axis.set_xlabel("internal tick")
        axis.set_ylabel("accuracy")
        axis.set_ylim(0.0, 1.02)
        axis.set_title(f"CTM accuracy by tick ({stage}, step {step})")
        if len(self._accumulators) > 1:
            axis.legend(fontsize="small", ncol=2)
        experiment.add_figure(f"ctm_ticks/{stage}_acc_by_tick", figure, step, close=True)
