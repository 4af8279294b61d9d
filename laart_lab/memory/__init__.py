"""Dynamic memory components (plain ``nn.Module``s, no Lightning): an external key-value memory and a
growing concept layer. Both implement :class:`laart_lab.components.MemoryModule` and are registered by
``laart_lab.plugins.memory`` as ``kv_memory`` and ``concept_growth``.
"""

from laart_lab.memory.concept_growth import ConceptLayer, ConsolidationResult, spherical_kmeans
from laart_lab.memory.kv_memory import KVMemory

__all__ = ["ConceptLayer", "ConsolidationResult", "KVMemory", "spherical_kmeans"]
