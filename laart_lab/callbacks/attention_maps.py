"""``AttentionMaps``: attention weights of a fixed validation snippet, drawn as TensorBoard images."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from typing_extensions import override

from laart_lab.callbacks._tensorboard import TensorBoardCallback, tensorboard_writer
from laart_lab.models.transformer import TransformerStack

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@torch.no_grad()
def snippet_attention(stack: TransformerStack, embedded: Tensor) -> list[Tensor | None]:
    """Per layer, the backend's (implied, normalised) weights ``[heads, T, T]`` for one embedded snippet.

    A backend that cannot say (``attention_weights`` returns None) gives ``None`` (that layer is not drawn).
    """
    return [None if weights is None else weights[0].float().cpu() for weights in stack.attention_maps(embedded)]


def draw(maps: list[Tensor | None], labels: list[str], max_heads: int) -> Figure:
    """One row per layer, one column per head; tick labels are the snippet's characters."""
    # matplotlib is imported (and switched to the file-only Agg backend) only once a figure is drawn,
    # so loading this callback does not change the backend of, say, a user's notebook
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = [(i, m) for i, m in enumerate(maps) if m is not None]
    heads = min(max_heads, max(m.shape[0] for _, m in layers))
    fig, axes = plt.subplots(len(layers), heads, figsize=(2.6 * heads, 2.6 * len(layers)), squeeze=False)
    for row, (layer, weights) in enumerate(layers):
        for head in range(heads):
            ax = axes[row][head]
            if head < weights.shape[0]:
                ax.imshow(weights[head].numpy(), cmap="viridis", vmin=0.0, aspect="auto")
            ax.set_title(f"layer {layer} head {head}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    if len(labels) <= 48:
        for ax in axes[-1]:
            ax.set_xticks(range(len(labels)), labels, fontsize=5)
        for row in axes:
            row[0].set_yticks(range(len(labels)), labels, fontsize=5)
    fig.tight_layout()
    return fig


class AttentionMaps(TensorBoardCallback):
    """After each validation, draw every layer's attention over the first ``snippet_length`` validation tokens.

    The snippet comes from the data module's ``snippet(length)`` (the ``text`` data module has it),
    so it is the same at every validation and maps are comparable over training. For linear
    attention the image shows the normalised weights implied by its feature map
    (``attention_weights()`` of the backend). Logged as the figure ``attention/maps``.

    Needs a model with a :class:`TransformerStack` as ``stack`` (and an ``embed`` module) and a data
    module with ``snippet()``: without them, setup raises. Warns once without a TensorBoard logger.
    """

    tensorboard_output = "the attention-map figures"

    def __init__(self, snippet_length: int = 48, max_heads: int = 4) -> None:
        super().__init__()
        self.snippet_length = snippet_length
        self.max_heads = max_heads
        self.last_maps: list[Tensor | None] | None = None

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage not in ("fit", "validate"):
            return  # maps are drawn after validation only
        datamodule = getattr(trainer, "datamodule", None)
        missing = []
        if not isinstance(getattr(pl_module, "stack", None), TransformerStack) or not hasattr(pl_module, "embed"):
            missing.append(f"a model with a TransformerStack `stack` and `embed` (not {type(pl_module).__name__})")
        if datamodule is None or not hasattr(datamodule, "snippet"):
            missing.append(f"a data module with snippet(length) (got {type(datamodule).__name__})")
        if missing:
            raise MisconfigurationException(f"AttentionMaps needs {' and '.join(missing)}")

    @override
    @rank_zero_only
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        tokens = trainer.datamodule.snippet(self.snippet_length).to(pl_module.device)[None]
        was_training = pl_module.training
        pl_module.eval()
        try:
            self.last_maps = snippet_attention(pl_module.stack, pl_module.embed(tokens))
        finally:
            pl_module.train(was_training)
        writer = tensorboard_writer(trainer)
        if all(m is None for m in self.last_maps) or writer is None:
            return
        vocabulary = pl_module.hparams.get("vocabulary")
        labels = [repr(vocabulary[i])[1:-1] if vocabulary else str(i) for i in tokens[0].tolist()]
        figure = draw(self.last_maps, labels, self.max_heads)
        writer.add_figure("attention/maps", figure, global_step=trainer.global_step)
        import matplotlib.pyplot as plt  # already imported by draw()

        plt.close(figure)
