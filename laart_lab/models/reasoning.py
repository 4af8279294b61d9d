"""``RelationReasoning``: trains and evaluates any ``reasoner`` plugin on relational queries (CLUTRR).

The reasoner comes from the recipe by registered name (``slrm``, ``gru``, ``gnn``, or a third party's);
this module owns what every reasoner shares: the loss hook, accuracy overall and per path length k,
per-test-file metrics, the optimiser, and the per-k table printed when testing ends.

Metrics: ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``val/acc_k{k}``, ``test/acc_k{k}``
(one per test k; k is the file's, from ``batch.meta["task_k"]``; files with the same k, e.g. CLUTRR's
``1.3`` and ``2.3``, count together), ``test/acc_mean`` (the unweighted mean over the test ks), and the
reasoner's own scalars as ``reasoner/<name>``. When some k has several test files (task names from
``batch.meta["task_name"]``), each file's accuracy is also logged as ``test/acc_{task}`` (``test/acc_2.3``).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from laart_lab.components.reasoner import InventsRelations, Reasoner, ReasonerFactory, ReasonerOutput, ReasoningBatch
from laart_lab.registry import component_factory, make_specs_plain

MAX_K = 32  # per-k metrics exist for path lengths 1..MAX_K (longer paths count in the overall accuracy only)


class RelationReasoning(LightningModule):
    """Relational reasoning with a pluggable reasoner.

    Args:
        reasoner: factory from the recipe, called as ``reasoner(num_relations)``.
        num_relations: relation vocabulary size (filled from the data module's facts by the CLI).
        relation_names: the vocabulary (filled from the data's facts; kept in hparams and checkpoints).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        reasoner_log_every: log the reasoner's ``log_metrics()`` every this many training steps.
    """

    def __init__(
        self,
        reasoner: ReasonerFactory,
        num_relations: int | None = None,
        relation_names: list[str] | None = None,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        reasoner_log_every: int = 50,
    ) -> None:
        super().__init__()
        if num_relations is None and relation_names is not None:
            num_relations = len(relation_names)
        if num_relations is None:
            raise ValueError(
                "RelationReasoning needs num_relations: give it in model.init_args or use a data module whose "
                "data_facts() provides it (e.g. clutrr)"
            )
        if relation_names is not None and len(relation_names) != num_relations:
            raise ValueError(f"relation_names has {len(relation_names)} names but num_relations is {num_relations}")
        self.save_hyperparameters()  # the CLI stores the reasoner spec as plain data
        make_specs_plain(self.hparams, {"reasoner": "reasoner"})  # a model built in Python: made plain too
        self.lr, self.weight_decay, self.reasoner_log_every = lr, weight_decay, reasoner_log_every
        self.reasoner: Reasoner = component_factory(reasoner, "reasoner")(num_relations)
        self.num_relations = num_relations
        self.relation_names = list(relation_names) if relation_names else [f"r{i}" for i in range(num_relations)]
        acc = lambda: MulticlassAccuracy(num_relations, average="micro")  # noqa: E731
        self.train_acc, self.val_acc = acc(), acc()
        self.val_acc_k = nn.ModuleList(acc() for _ in range(MAX_K + 1))
        self.test_acc_k = nn.ModuleList(acc() for _ in range(MAX_K + 1))
        self.test_loss = MeanMetric()
        self._val_seen: set[int] = set()
        self._test_seen: list[int] = []
        self._test_tasks: dict[str, tuple[int, MulticlassAccuracy]] = {}  # task name -> (k, accuracy)
        self.last_test_table: dict[int, float] = {}
        self.last_test_task_table: dict[str, float] = {}  #: task name -> accuracy (every named test file)

    def forward(self, batch: ReasoningBatch) -> ReasonerOutput:
        return self.reasoner(batch)

    def _target(self, batch: ReasoningBatch) -> Tensor:
        if batch.target is None:
            raise ValueError("this batch has no target; training and evaluation need ReasoningBatch.target")
        return batch.target

    def training_step(self, batch: ReasoningBatch, batch_idx: int) -> Tensor:
        target = self._target(batch)
        output = self(batch)
        loss = self.reasoner.loss(output, target)
        self.train_acc(output.logits, target)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch.batch_size)
        self.log("train/acc", self.train_acc, prog_bar=True, batch_size=batch.batch_size)
        if self.global_step % max(1, self.reasoner_log_every) == 0:
            for name, value in self.reasoner.log_metrics().items():
                self.log(f"reasoner/{name}", float(value), batch_size=batch.batch_size)
        return loss

    def validation_step(self, batch: ReasoningBatch, batch_idx: int) -> None:
        target = self._target(batch)
        output = self(batch)
        self.val_acc(output.logits, target)
        self.log("val/loss", self.reasoner.loss(output, target), prog_bar=True, batch_size=batch.batch_size)
        self.log("val/acc", self.val_acc, prog_bar=True, batch_size=batch.batch_size)
        lengths = batch.path_length if batch.path_length is not None else batch.path_mask.sum(1)
        for k in lengths.unique().tolist():
            if 1 <= k <= MAX_K:
                mask = lengths == k
                _metric(self.val_acc_k, k).update(output.logits[mask], target[mask])
                self._val_seen.add(int(k))

    def on_validation_epoch_end(self) -> None:
        for k in sorted(self._val_seen):
            self.log(f"val/acc_k{k}", _metric(self.val_acc_k, k).compute())
            _metric(self.val_acc_k, k).reset()
        self._val_seen.clear()

    def test_step(self, batch: ReasoningBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        target = self._target(batch)
        output = self(batch)
        k = batch.meta.get("task_k")
        if k is None:
            k = int(batch.path_length.max()) if batch.path_length is not None else int(batch.path_mask.sum(1).max())
        if not 1 <= k <= MAX_K:
            raise ValueError(f"test files must have 1 <= k <= {MAX_K}, got k={k}")
        if k not in self._test_seen:
            self._test_seen.append(int(k))
        _metric(self.test_acc_k, k).update(output.logits, target)
        task = batch.meta.get("task_name")
        if task is not None:
            if task not in self._test_tasks:
                metric = MulticlassAccuracy(self.num_relations, average="micro").to(output.logits.device)
                self._test_tasks[str(task)] = (int(k), metric)
            self._test_tasks[str(task)][1].update(output.logits, target)
        self.test_loss.update(self.reasoner.loss(output, target).detach(), weight=batch.batch_size)

    def on_test_epoch_end(self) -> None:
        table = {k: float(_metric(self.test_acc_k, k).compute()) for k in sorted(self._test_seen)}
        for k, value in table.items():
            self.log(f"test/acc_k{k}", value, add_dataloader_idx=False)
            _metric(self.test_acc_k, k).reset()
        if table:
            self.log("test/acc_mean", sum(table.values()) / len(table), add_dataloader_idx=False)
            self.log("test/loss", self.test_loss.compute(), add_dataloader_idx=False)
        tasks = {task: float(metric.compute()) for task, (_, metric) in self._test_tasks.items()}
        ks_of_tasks = [k for k, _ in self._test_tasks.values()]
        if len(set(ks_of_tasks)) < len(ks_of_tasks):  # task names are not unique per k: log each file too
            for task, value in tasks.items():
                self.log(f"test/acc_{task}", value, add_dataloader_idx=False)
        self.test_loss.reset()
        self._test_seen.clear()
        self._test_tasks.clear()
        self.last_test_table = table
        self.last_test_task_table = tasks
        if table and self.trainer.is_global_zero:
            print(format_per_k_table(table, type(self.reasoner).__name__))

    def predict_step(self, batch: ReasoningBatch, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        return self(batch).logits.argmax(-1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store what the reasoner learned in plain data (``torch.load(weights_only=True)`` reads it)."""
        if isinstance(self.reasoner, InventsRelations):
            invented = self.reasoner.invented_relations(self.relation_names)
            checkpoint["invented_relations"] = {k: list(v) for k, v in invented.items()}
        checkpoint["relation_names"] = list(self.relation_names)


def _metric(metrics: nn.ModuleList, k: int) -> MulticlassAccuracy:
    metric = metrics[k]
    assert isinstance(metric, MulticlassAccuracy)
    return metric


def format_per_k_table(table: dict[int, float], title: str = "") -> str:
    """A plain-text table of accuracy per test file k, with the unweighted mean."""
    lines = [f"Test accuracy per k{f' ({title})' if title else ''}", f"{'k':>4}  {'acc':>7}"]
    lines += [f"{k:>4}  {acc:>7.4f}" for k, acc in table.items()]
    lines.append(f"{'mean':>4}  {sum(table.values()) / len(table):>7.4f}  (unweighted over {len(table)} test files)")
    return "\n".join(lines)
