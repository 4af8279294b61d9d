"""``SequenceClassifier``: a small transformer encoder that labels whole sequences.

It is the model of the quickstart recipe: the attention backend comes from the recipe by
registered name, so the same recipe runs any installed backend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from laart_lab.components.attention import AttentionFactory
from laart_lab.components.data import ClassificationBatch
from laart_lab.models.transformer import TransformerStack


class SequenceClassifier(LightningModule):
    """Token embeddings -> bidirectional transformer -> mean pooling -> class logits.

    ``vocab_size`` and ``num_classes`` default to the data module's facts (see ``laart-lab`` CLI).
    """

    def __init__(
        self,
        attention: AttentionFactory,
        vocab_size: int | None = None,
        num_classes: int | None = None,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        max_len: int = 512,
        lr: float = 3e-3,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__()
        if vocab_size is None or num_classes is None:
            raise ValueError(
                "SequenceClassifier needs vocab_size and num_classes: give them in the recipe's model.init_args "
                "or use a data module that provides them through data_facts()"
            )
        self.save_hyperparameters()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.encoder = TransformerStack(
            d_model, n_layers, n_heads, attention, causal=False, position="learned", max_len=max_len
        )
        self.head = nn.Linear(d_model, num_classes)
        self.metrics = nn.ModuleDict(
            {split: MulticlassAccuracy(num_classes) for split in ("train_acc", "val_acc", "test_acc")}
        )

    def forward(self, tokens: Tensor) -> Tensor:
        hidden = self.encoder(self.embed(tokens))
        return self.head(hidden.mean(dim=1))

    def _step(self, batch: ClassificationBatch, split: str) -> Tensor:
        tokens, labels = batch
        logits = self(tokens)
        loss = F.cross_entropy(logits, labels)
        accuracy = self.metrics[f"{split}_acc"]
        accuracy(logits, labels)
        self.log(f"{split}/loss", loss, prog_bar=split != "test")
        self.log(f"{split}/acc", accuracy, prog_bar=True)
        return loss

    def training_step(self, batch: ClassificationBatch, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: ClassificationBatch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: ClassificationBatch, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: ClassificationBatch, batch_idx: int) -> Tensor:
        return self(batch[0]).argmax(dim=-1)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        return optimizer
