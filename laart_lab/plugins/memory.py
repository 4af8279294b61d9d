"""Built-in memory plugin: ``kv_memory`` and ``concept_growth`` modules, the ``concept_growth`` callback and
the ``recall`` data module (long-range recall beyond the context window)."""

from __future__ import annotations

from laart_lab.callbacks.concept_growth import ConceptGrowth
from laart_lab.data.recall import RecallDataModule
from laart_lab.hookspecs import hookimpl
from laart_lab.memory.concept_growth import ConceptLayer
from laart_lab.memory.kv_memory import KVMemory


@hookimpl
def register_memory(register) -> None:
    register("kv_memory", KVMemory)
    register("concept_growth", ConceptLayer)


@hookimpl
def register_callback(register) -> None:
    register("concept_growth", ConceptGrowth)


@hookimpl
def register_datamodule(register) -> None:
    register("recall", RecallDataModule)
