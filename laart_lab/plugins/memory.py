"""Built-in memory modules (kind ``memory``; base class :class:`laart_lab.components.MemoryModule`).

The ``concept_growth`` module's callback is in ``plugins/callback.py``; the ``recall`` data module (the
long-range recall task the memory modules are measured on) in ``plugins/datamodule.py``.
"""

from __future__ import annotations

from laart_lab.hookspecs import RegisterComponent, hookimpl


@hookimpl
def register_memory(register: RegisterComponent) -> None:
    register("kv_memory", "laart_lab.memory.kv_memory:KVMemory")
    register("concept_growth", "laart_lab.memory.concept_growth:ConceptLayer")
