"""``InventedRelations``: how many relations the reasoner invented, and which compositions they name.

For reasoners exposing ``invented_relations(names) -> {concept: ["a∘b", ...]}`` (the SLRM): logs the
count as ``slrm/invented_relations`` and the listing as TensorBoard text after each validation.
(The listing is also saved in every checkpoint by ``RelationReasoning.on_save_checkpoint``.)
"""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from laart_lab.callbacks._reasoner import ReasonerInspector
from laart_lab.callbacks._tensorboard import tensorboard_writer
from laart_lab.components.reasoner import InventsRelations


class InventedRelations(ReasonerInspector):
    contract = InventsRelations
    tensorboard_output = "the listing of invented relations (the count goes to every logger)"

    def __init__(self, min_confidence: float = 0.5) -> None:
        super().__init__()
        self.min_confidence = min_confidence

    @override
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        reasoner = self.reasoner(pl_module)
        if trainer.sanity_checking or reasoner is None:
            return
        invented = reasoner.invented_relations(getattr(pl_module, "relation_names", None), self.min_confidence)
        pl_module.log("slrm/invented_relations", float(len(invented)))
        writer = tensorboard_writer(trainer)
        if writer is not None:
            lines = [
                f"- **{c}** ({len(pairs)} pairs): {', '.join(pairs[:30])}{' …' if len(pairs) > 30 else ''}"
                for c, pairs in invented.items()
            ]
            writer.add_text("slrm/invented_relations", "\n".join(lines) or "(none)", trainer.global_step)
