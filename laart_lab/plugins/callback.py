"""Built-in training callbacks (kind ``callback``; subclasses of ``lightning.pytorch.Callback``)."""

from __future__ import annotations

from laart_lab.hookspecs import RegisterComponent, hookimpl


@hookimpl
def register_callback(register: RegisterComponent) -> None:
    # language models
    register("text_samples", "laart_lab.callbacks.text_samples:TextSamples")
    register("attention_maps", "laart_lab.callbacks.attention_maps:AttentionMaps")
    register("grad_norm", "laart_lab.callbacks.grad_norm:GradNormMonitor")
    # memory
    register("concept_growth", "laart_lab.callbacks.concept_growth:ConceptGrowth")
    # continual learning
    register("continual_matrix", "laart_lab.callbacks.continual:ContinualMatrix")
    register("stage_concept_growth", "laart_lab.callbacks.continual:StageConceptGrowth")
    # reasoning (SLRM, CLUTRR)
    register("per_k_accuracy", "laart_lab.callbacks.per_k_accuracy:PerKAccuracy")
    register("composition_table_image", "laart_lab.callbacks.composition_table_image:CompositionTableImage")
    register("invented_relations", "laart_lab.callbacks.invented_relations:InventedRelations")
    register("box_volume_stats", "laart_lab.callbacks.box_volume_stats:BoxVolumeStats")
    # LAART
    register("laart_story_graph", "laart_lab.callbacks.laart_story_graph:LaartStoryGraph")
    register("laart_predictions", "laart_lab.callbacks.laart_predictions:LaartPredictions")
    # any model
    register("ema_weights", "laart_lab.callbacks.ema_weights:EmaWeights")
