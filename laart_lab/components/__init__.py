"""Component contracts: the base classes every plugin of a kind subclasses.

Components are plain ``nn.Module``s, free of Lightning; the LightningModules in ``laart_lab.models``
compose them and the callbacks in ``laart_lab.callbacks`` observe them.
"""

from laart_lab.components.attention import (
    AttentionBackend,
    AttentionFactory,
    CachedKeysDecodingState,
    DecodingState,
    check_qkv,
)
from laart_lab.components.memory import MemoryFactory, MemoryModule
from laart_lab.components.reasoner import (
    ComposesRelations,
    ExplainsDerivations,
    HasRelationBoxes,
    InventsRelations,
    Reasoner,
    ReasonerFactory,
    ReasonerOutput,
    ReasoningBatch,
)

__all__ = [
    "AttentionBackend",
    "AttentionFactory",
    "CachedKeysDecodingState",
    "ComposesRelations",
    "DecodingState",
    "ExplainsDerivations",
    "HasRelationBoxes",
    "InventsRelations",
    "MemoryFactory",
    "MemoryModule",
    "Reasoner",
    "ReasonerFactory",
    "ReasonerOutput",
    "ReasoningBatch",
    "check_qkv",
]
