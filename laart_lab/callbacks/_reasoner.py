"""Callbacks that inspect the model's reasoner through an optional contract, and say once when it has none.

The SLRM figures (composition table, box volumes, invented relations) come from optional reasoner
methods declared as protocols in :mod:`laart_lab.components.reasoner`. A recipe that adds such a
callback to a model whose reasoner lacks the method (a GRU, a CTM) gets one warning at setup naming
the reasoner and the protocol, instead of a callback that silently does nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from laart_lab.callbacks._tensorboard import TensorBoardCallback


class ReasonerInspector(TensorBoardCallback):
    """Base: ``self.reasoner(pl_module)`` is the model's reasoner if it implements :attr:`contract`."""

    contract: ClassVar[type]
    """The ``runtime_checkable`` protocol the reasoner must implement."""

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        reasoner = getattr(pl_module, "reasoner", None)
        if not isinstance(reasoner, self.contract):
            what = type(reasoner).__name__ if reasoner is not None else f"{type(pl_module).__name__} (no .reasoner)"
            rank_zero_warn(
                f"{type(self).__name__} needs a reasoner implementing "
                f"laart_lab.components.reasoner.{self.contract.__name__}; {what} does not, so it logs nothing "
                "(remove it from the recipe's callbacks)"
            )

    def reasoner(self, pl_module: LightningModule) -> Any | None:
        reasoner = getattr(pl_module, "reasoner", None)
        return reasoner if isinstance(reasoner, self.contract) else None
