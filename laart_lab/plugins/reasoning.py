"""Built-in reasoning plugin: the SLRM and its baselines, the CLUTRR data module, and its callbacks.

Registered names (kind: name -> class):

* reasoner: ``slrm`` (:class:`~laart_lab.reasoning.slrm.SLRM`), ``gru``, ``transformer``, ``gnn``
  (:mod:`laart_lab.reasoning.baselines`);
* datamodule: ``clutrr`` (:class:`~laart_lab.data.clutrr.ClutrrDataModule`, real CLUTRR or generated);
* callback: ``per_k_accuracy``, ``composition_table_image``, ``invented_relations``, ``box_volume_stats``,
  and LAART's ``laart_story_graph`` (a validation story's read graph, in TensorBoard) and
  ``laart_predictions`` (``laart-lab predict`` rows as JSON lines or CSV).
"""

from __future__ import annotations

from laart_lab.callbacks.box_volume_stats import BoxVolumeStats
from laart_lab.callbacks.composition_table_image import CompositionTableImage
from laart_lab.callbacks.invented_relations import InventedRelations
from laart_lab.callbacks.laart_predictions import LaartPredictions
from laart_lab.callbacks.laart_story_graph import LaartStoryGraph
from laart_lab.callbacks.per_k_accuracy import PerKAccuracy
from laart_lab.data.clutrr import ClutrrDataModule
from laart_lab.hookspecs import hookimpl
from laart_lab.reasoning.baselines import GNNReasoner, GRUReasoner, TransformerPathReasoner
from laart_lab.reasoning.slrm import SLRM


@hookimpl
def register_reasoner(register) -> None:
    register("slrm", SLRM)
    register("gru", GRUReasoner)
    register("transformer", TransformerPathReasoner)
    register("gnn", GNNReasoner)


@hookimpl
def register_datamodule(register) -> None:
    register("clutrr", ClutrrDataModule)


@hookimpl
def register_callback(register) -> None:
    register("per_k_accuracy", PerKAccuracy)
    register("composition_table_image", CompositionTableImage)
    register("invented_relations", InventedRelations)
    register("box_volume_stats", BoxVolumeStats)
    register("laart_story_graph", LaartStoryGraph)
    register("laart_predictions", LaartPredictions)
