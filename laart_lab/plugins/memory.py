"""Built-in memory plugin: ``kv_memory`` and ``concept_growth`` modules, the ``concept_growth`` callback and
the ``recall`` data module (long-range recall beyond the context window). Registered lazily."""

from __future__ import annotations

from laart_lab.hookspecs import RegisterComponent, hookimpl


@hookimpl
def register_memory(register: RegisterComponent) -> None:
    register("kv_memory", "laart_lab.memory.kv_memory:KVMemory")
    register("concept_growth", "laart_lab.memory.concept_growth:ConceptLayer")


@hookimpl
def register_callback(register: RegisterComponent) -> None:
    register("concept_growth", "laart_lab.callbacks.concept_growth:ConceptGrowth")
    register("continual_matrix", "laart_lab.callbacks.continual:ContinualMatrix")
    register("stage_concept_growth", "laart_lab.callbacks.continual:StageConceptGrowth")


@hookimpl
def register_datamodule(register: RegisterComponent) -> None:
    register("recall", "laart_lab.data.recall:RecallDataModule")
