"""``TextSamples``: after each validation, generate a short text and log it to TensorBoard."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from laart_lab.callbacks._tensorboard import TensorBoardCallback, tensorboard_writer
from laart_lab.data.text import CharTokenizer


class TextSamples(TensorBoardCallback):
    """Sample ``num_chars`` characters from ``prompt`` with a fixed seed and log them as text.

    Works with any model offering ``generate_ids(prompt_ids, n, temperature, top_k, generator)`` and a
    ``vocabulary`` hyper-parameter (``CharLM``). Its own ``torch.Generator`` leaves the global RNG
    untouched, so sampling does not change the training run. The text also goes to
    ``self.last_sample`` (for tests and other callbacks).
    """

    tensorboard_output = "the text samples"

    def __init__(
        self, num_chars: int = 200, prompt: str = "\n", temperature: float = 0.8, top_k: int | None = 20, seed: int = 0
    ) -> None:
        super().__init__()
        self.num_chars, self.prompt, self.temperature, self.top_k, self.seed = (
            num_chars,
            prompt,
            temperature,
            top_k,
            seed,
        )
        self.last_sample: str | None = None

    @override
    @rank_zero_only
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not hasattr(pl_module, "generate_ids"):
            return
        tokenizer = CharTokenizer(pl_module.hparams.get("vocabulary"))
        prompt = self.prompt if all(ch in (tokenizer.vocabulary or ch) for ch in self.prompt) else ""
        prompt_ids = tokenizer.encode(prompt).tolist() if prompt else [0]
        generator = torch.Generator().manual_seed(self.seed)
        ids = list(pl_module.generate_ids(prompt_ids, self.num_chars, self.temperature, self.top_k, generator))
        self.last_sample = tokenizer.decode(prompt_ids + ids)
        experiment = tensorboard_writer(trainer)
        if experiment is not None:
            # TensorBoard renders text as markdown: indent to keep line breaks and spacing
            text = "    " + self.last_sample.replace("\n", "\n    ")
            experiment.add_text("samples/text", text, global_step=trainer.global_step)
