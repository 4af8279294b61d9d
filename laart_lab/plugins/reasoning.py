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

from laart_lab.hookspecs import RegisterComponent, hookimpl


@hookimpl
def register_reasoner(register: RegisterComponent) -> None:
    register("slrm", "laart_lab.reasoning.slrm:SLRM")
    register("gru", "laart_lab.reasoning.baselines:GRUReasoner")
    register("transformer", "laart_lab.reasoning.baselines:TransformerPathReasoner")
    register("gnn", "laart_lab.reasoning.baselines:GNNReasoner")


@hookimpl
def register_datamodule(register: RegisterComponent) -> None:
    register("clutrr", "laart_lab.data.clutrr:ClutrrDataModule")
    register("continual_kinship", "laart_lab.data.continual:ContinualKinshipDataModule")


@hookimpl
def register_callback(register: RegisterComponent) -> None:
    register("per_k_accuracy", "laart_lab.callbacks.per_k_accuracy:PerKAccuracy")
    register("composition_table_image", "laart_lab.callbacks.composition_table_image:CompositionTableImage")
    register("invented_relations", "laart_lab.callbacks.invented_relations:InventedRelations")
    register("box_volume_stats", "laart_lab.callbacks.box_volume_stats:BoxVolumeStats")
    register("laart_story_graph", "laart_lab.callbacks.laart_story_graph:LaartStoryGraph")
    register("laart_predictions", "laart_lab.callbacks.laart_predictions:LaartPredictions")
