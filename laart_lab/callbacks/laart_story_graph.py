"""``LaartStoryGraph``: one validation story as LAART read it, as a TensorBoard image.

The picture shows the story's entities with the gender the reader read for each, every fact the reader
extracted (arrow x -> y labelled "y is x's <relation>", the composed chain in red), the three answers
beside the gold one, and the SLRM's derivation step by step. Logs nothing when the trainer has no
TensorBoard logger (it says so once, at setup).
"""

from __future__ import annotations

import math
import textwrap
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from laart_lab.callbacks._tensorboard import TensorBoardCallback, tensorboard_writer


def story_graph_figure(row: dict[str, Any], story: str):
    """A matplotlib figure of one prediction row (:meth:`LaartModel.predict_step`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(
        dict.fromkeys(
            [*row["path"], *(f["head"] for f in row["extracted_edges"]), *(f["tail"] for f in row["extracted_edges"])]
        )
    )
    angle = {name: 2 * math.pi * i / max(1, len(names)) for i, name in enumerate(names)}
    xy = {name: (math.cos(a), math.sin(a)) for name, a in angle.items()}
    chain = {(c["head"], c["tail"]) for c in row["chain"]}
    figure, (graph, text) = plt.subplots(1, 2, figsize=(14, 6.5), gridspec_kw={"width_ratios": [1, 1]})
    for fact in row["extracted_edges"]:
        (x0, y0), (x1, y1) = xy[fact["head"]], xy[fact["tail"]]
        on_chain = (fact["head"], fact["tail"]) in chain
        graph.annotate(
            "", xy=(x1, y1), xytext=(x0, y0),
            arrowprops={"arrowstyle": "->", "color": "red" if on_chain else "0.6", "lw": 2 if on_chain else 0.8,
                        "shrinkA": 12, "shrinkB": 12, "connectionstyle": "arc3,rad=0.12"},
        )  # fmt: skip
        graph.text(0.55 * x0 + 0.45 * x1, 0.55 * y0 + 0.45 * y1, f"{fact['relation']} {fact['confidence']:.2f}",
                   fontsize=6, color="red" if on_chain else "0.35", ha="center")  # fmt: skip
    genders = row.get("genders", {})
    for name, (x, y) in xy.items():
        read = genders.get(name)
        label = name if read is None else f"{name}\n{read['gender']} {read['confidence']:.2f}"
        graph.text(x, y, label, ha="center", va="center", fontsize=8, bbox={"boxstyle": "round", "fc": "lightyellow"})
    graph.set_xlim(-1.4, 1.4)
    graph.set_ylim(-1.4, 1.4)
    graph.axis("off")
    graph.set_title(f"read facts (red: composed chain)  query {row['query'][0]} -> {row['query'][1]}", fontsize=9)
    lines = [
        *textwrap.wrap(story, 90),
        "",
        f"gold: {row['gold']}   fast: {row['fast']}   slow: {row['slow']}   laart: {row['laart']}",
        f"check: consistency {row['check']['consistency']:.3f} vs threshold {row['check']['threshold']:g}"
        f" -> {'kept fast' if row['check']['kept_fast'] else 'took slow'}",
        "",
        "derivation (innermost first):",
        *(f"  {i + 1}. {step}" for i, step in enumerate(row["derivation"] or ["(this reasoner gives no derivation)"])),
    ]
    text.text(0.0, 1.0, "\n".join(lines), va="top", fontsize=7, family="monospace")
    text.axis("off")
    figure.tight_layout()
    return figure


class LaartStoryGraph(TensorBoardCallback):
    """After each validation, draw the first story of the first validation batch (``example_index``)."""

    tensorboard_output = "the story-graph figures"

    def __init__(self, example_index: int = 0) -> None:
        super().__init__()
        self.example_index = example_index

    @override
    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx != 0 or dataloader_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        writer = tensorboard_writer(trainer)
        if writer is None:  # said once, at setup
            return
        predict = getattr(pl_module, "predict_step", None)
        if predict is None:
            return
        with torch.no_grad():
            rows = predict(batch, 0)
        index = min(self.example_index, len(rows) - 1)
        figure = story_graph_figure(rows[index], batch.meta["story"][index])
        writer.add_figure("laart/story_graph", figure, trainer.global_step)
