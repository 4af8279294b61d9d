"""``CompositionTableImage``: the reasoner's learned composition table as a TensorBoard image.

Works with any reasoner implementing :class:`~laart_lab.components.reasoner.ComposesRelations`
(the SLRM does). Cell (a, b) shows the most likely result of "a then b", coloured by its confidence.
"""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from laart_lab.callbacks._reasoner import ReasonerInspector
from laart_lab.callbacks._tensorboard import tensorboard_writer
from laart_lab.components.reasoner import ComposesRelations


def composition_figure(table: torch.Tensor, labels: list[str], num_named: int):
    """A matplotlib figure of ``argmax``/``max`` of the named-pair block of ``table``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confidence, result = table[:num_named, :num_named].max(-1)
    size = max(6.0, 0.45 * num_named)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(confidence.cpu().numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
    for a in range(num_named):
        for b in range(num_named):
            name = labels[int(result[a, b])]
            axis.text(
                b,
                a,
                name[:10],
                ha="center",
                va="center",
                fontsize=5,
                color="white" if confidence[a, b] < 0.6 else "black",
            )
    axis.set_xticks(range(num_named), labels[:num_named], rotation=90, fontsize=6)
    axis.set_yticks(range(num_named), labels[:num_named], fontsize=6)
    axis.set_xlabel("second relation (b)")
    axis.set_ylabel("first relation (a)")
    axis.set_title("learned composition a∘b (colour: confidence)")
    figure.tight_layout()
    return figure


class CompositionTableImage(ReasonerInspector):
    """Log the composition table as an image every ``every_n_epochs`` validations."""

    contract = ComposesRelations
    tensorboard_output = "the composition-table image"

    def __init__(self, every_n_epochs: int = 1) -> None:
        super().__init__()
        self.every_n_epochs = every_n_epochs

    @override
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        reasoner = self.reasoner(pl_module)
        writer = tensorboard_writer(trainer)
        if trainer.sanity_checking or writer is None or reasoner is None:
            return
        if trainer.current_epoch % max(1, self.every_n_epochs):
            return
        with torch.no_grad():
            table = reasoner.composition_tensor().detach()
        labels = reasoner.relation_labels(getattr(pl_module, "relation_names", None))
        writer.add_figure(
            "slrm/composition_table", composition_figure(table, labels, reasoner.num_relations), trainer.global_step
        )
