"""``AttentionMaps``: attention weights of a fixed validation snippet, drawn as TensorBoard images."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402
from lightning.pytorch.utilities import rank_zero_only  # noqa: E402
from torch import Tensor  # noqa: E402

from laart_lab.models.transformer import TransformerStack  # noqa: E402


@torch.no_grad()
def snippet_attention(stack: TransformerStack, embedded: Tensor) -> list[Tensor | None]:
    """Per layer, the backend's (implied, normalised) weights ``[heads, T, T]`` for one embedded snippet.

    A backend that cannot say (``attention_weights`` returns None) gives ``None`` (that layer is not drawn).
    """
    maps: list[Tensor | None] = []
    h = stack._add_positions(embedded, 0)
    for block in stack.blocks:
        q, k, _, _, _ = block.attn.project(block.norm1(h), 0)
        backend = block.attn.backend
        weights = backend.attention_weights(q, k, causal=block.attn.causal)
        maps.append(None if weights is None else weights[0].float().cpu())
        h = block(h, 0)
    return maps


def draw(maps: list[Tensor | None], labels: list[str], max_heads: int) -> plt.Figure:
    """One row per layer, one column per head; tick labels are the snippet's characters."""
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


class AttentionMaps(Callback):
    """After each validation, draw every layer's attention over the first ``snippet_length`` validation tokens.

    The snippet comes from the data module's ``snippet(length)`` (the ``text`` data module has it),
    so it is the same at every validation and maps are comparable over training. For linear
    attention the image shows the normalised weights implied by its feature map
    (``attention_weights()`` of the backend). Logged as the figure ``attention/maps``.
    """

    def __init__(self, snippet_length: int = 48, max_heads: int = 4) -> None:
        super().__init__()
        self.snippet_length = snippet_length
        self.max_heads = max_heads
        self.last_maps: list[Tensor | None] | None = None
        self._warned = False

    @rank_zero_only
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        datamodule = getattr(trainer, "datamodule", None)
        stack = getattr(pl_module, "stack", None)
        if datamodule is None or not hasattr(datamodule, "snippet") or not isinstance(stack, TransformerStack):
            if not self._warned:
                warnings.warn(
                    "AttentionMaps needs a data module with snippet() and a model with a TransformerStack", stacklevel=2
                )
                self._warned = True
            return
        tokens = datamodule.snippet(self.snippet_length).to(pl_module.device)[None]
        was_training = pl_module.training
        pl_module.eval()
        try:
            self.last_maps = snippet_attention(stack, pl_module.embed(tokens))
        finally:
            pl_module.train(was_training)
        experiment = getattr(trainer.logger, "experiment", None)
        if all(m is None for m in self.last_maps) or experiment is None or not hasattr(experiment, "add_figure"):
            return
        vocabulary = pl_module.hparams.get("vocabulary")
        labels = [repr(vocabulary[i])[1:-1] if vocabulary else str(i) for i in tokens[0].tolist()]
        figure = draw(self.last_maps, labels, self.max_heads)
        experiment.add_figure("attention/maps", figure, global_step=trainer.global_step)
        plt.close(figure)
