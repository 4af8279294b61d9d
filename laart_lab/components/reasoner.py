"""The relational-reasoner contract (SLRM, baselines, third-party reasoners such as a CTM).

A reasoner reads one query per example: "how is the first query entity related to the second?",
given the story as a relation graph, and returns scores over the relation vocabulary. The
:class:`ReasoningBatch` gives it two views of the same story, so each reasoner uses what it needs:

* the *path* view: the relation ids along the chain from the query's head to its tail
  (``path``, ``path_mask``), which is what path-composing reasoners (SLRM, sequence models) read;
* the *graph* view: every story edge ``(source, target, relation)`` (``edges``, ``edge_mask``) with
  node genders, and the query's two nodes, which graph networks read.

Relation ids index the data's relation vocabulary (``0 .. num_relations-1``); padded slots are
marked by the masks and hold ``0``.

When the relations were *read* from text (LAART's reader) rather than given, ``path_probs`` carries
the reader's distribution over the vocabulary at every path step (``path`` holds its argmax). A
reasoner that can compose distributions (the SLRM) reads them, so the answer's gradient reaches the
reader; every other reasoner reads ``path`` as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class ReasoningBatch:
    """A padded batch of relational queries. Shapes use B=batch, K=path length, E=edges, N=nodes."""

    path: Tensor  #: long [B, K] relation ids along the query path, left-aligned, padded with 0
    path_mask: Tensor  #: bool [B, K] True for real path steps
    edges: Tensor  #: long [B, E, 3] (source node, target node, relation id): "source's relation is target"
    edge_mask: Tensor  #: bool [B, E]
    query: Tensor  #: long [B, 2] (head node, tail node); the answer is "head's <target> is tail"
    node_genders: Tensor  #: long [B, N] 0 unknown, 1 female, 2 male
    target: Tensor | None = None  #: long [B] relation id of the answer (None at prediction time)
    path_length: Tensor | None = None  #: long [B] the k of each example (number of path relations)
    meta: dict[str, Any] = field(default_factory=dict)  #: free-form extras (texts, ids) for text models
    path_probs: Tensor | None = None  #: float [B, K, num_relations] read relation distributions (optional)

    def to(self, device: torch.device | str) -> ReasoningBatch:
        moved = {
            f.name: (
                getattr(self, f.name).to(device) if isinstance(getattr(self, f.name), Tensor) else getattr(self, f.name)
            )
            for f in fields(self)
        }
        return ReasoningBatch(**moved)

    @property
    def batch_size(self) -> int:
        return int(self.path.shape[0])


@dataclass
class ReasonerOutput:
    """What a reasoner returns. ``logits`` are over the relation vocabulary."""

    logits: Tensor  #: float [B, num_relations]
    aux_loss: Tensor | None = None  #: added to the training loss when present
    extras: dict[str, Tensor] = field(default_factory=dict)  #: per-example diagnostics for callbacks/logs


class Reasoner(nn.Module):
    """Base class for reasoners. The first constructor argument is always ``num_relations``.

    Models receive a :data:`ReasonerFactory` from the recipe and call it with the vocabulary size
    the data module found, so a recipe never repeats facts the data already knows.
    """

    def __init__(self, num_relations: int) -> None:
        super().__init__()
        if num_relations < 1:
            raise ValueError(f"num_relations must be >= 1, got {num_relations}")
        self.num_relations = num_relations

    def forward(self, batch: ReasoningBatch) -> ReasonerOutput:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward(batch) -> ReasonerOutput")

    def loss(self, output: ReasonerOutput, target: Tensor) -> Tensor:
        """Training loss. Default: cross-entropy of ``logits`` plus ``aux_loss``; override for custom losses."""
        loss = F.cross_entropy(output.logits, target)
        if output.aux_loss is not None:
            loss = loss + output.aux_loss
        return loss

    def log_metrics(self) -> dict[str, float]:
        """Scalars the module logs after each training step (e.g. number of invented relations)."""
        return {}

    def consistency(self, output: ReasonerOutput, conclusion: Tensor) -> Tensor:
        """How strongly this reasoner's answer supports ``conclusion`` (relation ids ``[B]``), in [0, 1].

        LAART's check asks it whether the fast system's answer follows from the premises read from the
        story. Default: the probability the reasoner gives the conclusion; the SLRM overrides it with box
        containment (:meth:`laart_lab.reasoning.slrm.SLRM.score_distribution`).
        """
        probs = torch.softmax(output.logits.float(), dim=-1)
        return probs.gather(1, conclusion.view(-1, 1)).squeeze(1)


ReasonerFactory = Callable[[int], Reasoner]
"""What a model receives from a recipe: ``factory(num_relations)`` builds the reasoner."""


# ---- optional inspection methods -------------------------------------------------------------------
# A reasoner may offer more than forward/loss. Callbacks and LAART's predictions test for these with
# ``isinstance(reasoner, Protocol)`` (structural: no subclassing needed), so a third-party reasoner that
# implements one gets the matching figures and explanations too. The SLRM implements all four.


@runtime_checkable
class LabelsRelations(Protocol):
    """A reasoner that can name its relation ids, its own concepts included."""

    def relation_labels(self, relation_names: list[str] | None = None) -> list[str]:
        """A label per relation id and concept id (the data's names first), for figures and derivations."""
        ...


@runtime_checkable
class ComposesRelations(LabelsRelations, Protocol):
    """A reasoner with an explicit composition table (``composition_table_image`` draws it)."""

    num_relations: int

    def composition_tensor(self) -> Tensor:
        """``T [N, N, N]``: probability that relation a then b composes to c (N >= num_relations: the first
        ``num_relations`` are the named relations, the rest the reasoner's own concepts)."""
        ...


@runtime_checkable
class InventsRelations(Protocol):
    """A reasoner that names compositions with concepts of its own (``invented_relations`` logs them)."""

    def invented_relations(
        self, relation_names: list[str] | None = None, min_confidence: float = 0.5
    ) -> dict[str, list[str]]:
        """``{concept label: ["a∘b", ...]}``: the compositions each invented concept stands for."""
        ...


@runtime_checkable
class HasRelationBoxes(Protocol):
    """A reasoner that embeds relations as regions with a volume (``box_volume_stats`` logs them)."""

    num_relations: int

    def box_log_volumes(self) -> Tensor:
        """``[N]`` log-volume of every relation's box, the named relations first."""
        ...


@runtime_checkable
class ExplainsDerivations(LabelsRelations, Protocol):
    """A reasoner that can say how it composed a path (``laart-lab predict`` writes the derivation)."""

    def derivation(self, path: Tensor, path_probs: Tensor | None = None) -> Any:
        """The best derivation of one path (relation ids ``[K]``; optionally read distributions ``[K, R]``):
        a tree whose ``steps()`` lists the compositions innermost first, each node with ``relation``,
        ``span``, ``log_prob``, ``left`` and ``right`` (see :class:`laart_lab.reasoning.slrm.Derivation`)."""
        ...
