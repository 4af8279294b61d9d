"""``CharLM``: a decoder-only, pre-norm character (or byte) language model composed from plugins.

The attention backend is chosen by registered name in the recipe (``attention: {class_path: linear}``)
and an optional memory module plugs into one block (``memory: {class_path: <name>}``,
``memory_layer``). Training is Lightning's: AdamW with decoupled weight decay on matrices only,
linear warmup then cosine decay per step, gradient clipping and precision from the Trainer.

Losses are in nats per token; ``bpc`` = loss / ln 2 (bits per character, or per byte).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import Tensor, nn
from torchmetrics import MeanMetric

from laart_lab.components.attention import AttentionFactory
from laart_lab.components.data import TokenBatch
from laart_lab.components.memory import MemoryFactory
from laart_lab.models.lr_schedule import LrSchedule, check_schedule, fit_timer, time_progress, warmup_cosine
from laart_lab.models.transformer import DecodingCache, MlpKind, NormKind, PositionKind, TransformerStack
from laart_lab.registry import component_factory, component_spec, make_specs_plain

# the names this module exported before the helpers moved to the registry (kept for callers)
resolve_component = component_factory
__all__ = ["CharLM", "component_spec", "resolve_component"]

LN2 = math.log(2.0)
DEFAULT_ATTENTION = "softmax"  # the registered attention backend used when a recipe names none


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------
class CharLM(LightningModule):
    """Decoder-only transformer language model over characters or bytes (tied input/output embeddings).

    Args:
        attention: attention backend factory (a registered name in recipes); default ``softmax``.
        vocab_size, vocabulary: filled from the data module's facts by the CLI; ``vocabulary`` is the
            character list (None for byte level) and travels in the checkpoint for generation.
        block_size: training window length (a data fact); generation with a non-recurrent backend
            keeps its context within it.
        d_model, n_layers, n_heads, norm, mlp, position, max_len, dropout, bias: the transformer;
            ``mlp_hidden`` overrides the MLP width (default 4 x d_model, or 8/3 x for SwiGLU).
        memory, memory_layer: optional memory module factory ``(d_model, n_heads)`` and its block.
        lr, min_lr_ratio, warmup_steps, lr_decay_steps: peak learning rate, linear warmup, cosine
            decay to ``lr * min_lr_ratio`` at ``lr_decay_steps`` (default: the Trainer's step budget).
        lr_schedule: what the cosine decay runs over: ``"steps"`` (``lr_decay_steps``) or ``"time"``: the
            larger of the step fraction and the fraction of the Trainer's ``max_time`` already spent, so a
            time-budgeted run reaches the floor learning rate when its time is up, whatever its throughput.
        weight_decay, betas: AdamW; decay applies to weight matrices only (not norms, biases, embeddings).
        compile: run the forward pass through ``torch.compile``.
    """

    def __init__(
        self,
        attention: AttentionFactory | None = None,
        vocab_size: int | None = None,
        vocabulary: str | None = None,
        block_size: int | None = None,
        d_model: int = 256,
        n_layers: int = 4,
        n_heads: int = 4,
        norm: NormKind = "rmsnorm",
        mlp: MlpKind = "gelu",
        position: PositionKind = "rotary",
        max_len: int = 4096,
        dropout: float = 0.0,
        bias: bool = False,
        mlp_hidden: int | None = None,
        memory: MemoryFactory | None = None,
        memory_layer: int = -1,
        lr: float = 1e-3,
        min_lr_ratio: float = 0.1,
        warmup_steps: int = 100,
        lr_decay_steps: int | None = None,
        lr_schedule: LrSchedule = "steps",
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        compile: bool = False,
    ) -> None:
        super().__init__()
        if vocabulary is not None and vocab_size is None:
            vocab_size = len(vocabulary)
        if vocab_size is None:
            raise ValueError(
                "CharLM needs vocab_size: give it in the recipe's model.init_args or use a data module that "
                "provides it through data_facts() (the `text` data module does)"
            )
        check_schedule(lr_schedule, "CharLM")
        if vocabulary is not None and len(vocabulary) != vocab_size:
            raise ValueError(f"vocabulary has {len(vocabulary)} characters but vocab_size is {vocab_size}")
        self.save_hyperparameters()
        make_specs_plain(self.hparams, {"attention": "attention", "memory": "memory"})
        self.hparams["vocab_size"] = vocab_size
        attention_factory = component_factory(attention or DEFAULT_ATTENTION, "attention")
        memory_factory = component_factory(memory, "memory")
        self.embed = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.stack = TransformerStack(
            d_model,
            n_layers,
            n_heads,
            attention_factory,
            causal=True,
            norm=norm,
            mlp=mlp,
            dropout=dropout,
            position=position,
            max_len=max_len,
            memory=memory_factory,
            memory_layer=memory_layer,
            bias=bias,
            mlp_hidden=mlp_hidden,
        )
        self.metrics = nn.ModuleDict(
            {f"{split}_{name}": MeanMetric() for split in ("val", "test") for name in ("loss", "bpc", "acc")}
        )
        self._forward_impl = torch.compile(self._logits) if compile else self._logits

    # -- model ------------------------------------------------------------------------------
    @property
    def memory(self):
        """The memory module in the memory slot (None when the recipe has none)."""
        return self.stack.memory

    def _logits(self, tokens: Tensor, offset: int = 0) -> Tensor:
        hidden = self.stack(self.embed(tokens), offset)
        return F.linear(hidden, self.embed.weight)  # tied output embedding

    def forward(self, tokens: Tensor, offset: int = 0) -> Tensor:
        """Next-token logits ``[batch, seq, vocab]`` for tokens ``[batch, seq]`` starting at position ``offset``."""
        return self._forward_impl(tokens, offset)

    def _loss(self, batch: TokenBatch) -> tuple[Tensor, Tensor]:
        """``(total loss, LM loss in nats/token)``; resets memory rows that start a new stream."""
        total, lm_loss, _ = self._loss_and_logits(batch)
        return total, lm_loss

    def _loss_and_logits(self, batch: TokenBatch) -> tuple[Tensor, Tensor, Tensor]:
        """As :meth:`_loss`, plus the logits. Targets equal to -100 are ignored (as in ``F.cross_entropy``)."""
        if self.memory is not None and "stream_start" in batch:
            self.memory.reset(batch["stream_start"].bool())
        logits = self(batch["input"])
        lm_loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch["target"].reshape(-1))
        total = lm_loss
        if self.memory is not None:
            aux = self.memory.auxiliary_loss()
            if aux is not None:
                total = total + aux
        return total, lm_loss, logits

    # -- Lightning steps ----------------------------------------------------------------------
    def training_step(self, batch: TokenBatch, batch_idx: int) -> Tensor:
        total, lm_loss = self._loss(batch)
        detached = lm_loss.detach()
        self.log("train/loss", detached, prog_bar=True)
        self.log("train/bpc", detached / LN2)
        if total is not lm_loss:
            self.log("train/aux_loss", (total - lm_loss).detach())
        return total

    def _eval_step(self, batch: TokenBatch, split: str) -> None:
        _, lm_loss, logits = self._loss_and_logits(batch)
        weight = int((batch["target"] != -100).sum())
        loss_metric, bpc_metric = self.metrics[f"{split}_loss"], self.metrics[f"{split}_bpc"]
        loss_metric.update(lm_loss.detach(), weight=weight)
        bpc_metric.update(lm_loss.detach() / LN2, weight=weight)
        self.log(f"{split}/loss", loss_metric, prog_bar=True)
        self.log(f"{split}/bpc", bpc_metric)
        mask = batch.get("score_mask")
        if mask is not None and bool(mask.any()):
            # accuracy of argmax predictions on the scored positions only (e.g. recall queries)
            correct = (logits.argmax(-1) == batch["target"])[mask.bool()].float()
            accuracy = self.metrics[f"{split}_acc"]
            accuracy.update(correct)
            self.log(f"{split}/acc", accuracy, prog_bar=True)

    def validation_step(self, batch: TokenBatch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: TokenBatch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _reset_memory(self) -> None:
        self.stack.reset_memory(None)

    def on_train_epoch_start(self) -> None:
        self._reset_memory()

    def on_validation_start(self) -> None:
        self._reset_memory()

    def on_validation_end(self) -> None:
        self._reset_memory()

    def on_test_start(self) -> None:
        self._reset_memory()

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        vocabulary = getattr(datamodule, "vocabulary", None) if datamodule is not None else None
        if datamodule is not None and hasattr(datamodule, "vocabulary") and vocabulary != self.hparams.vocabulary:
            raise ValueError(
                "the data's vocabulary differs from the model's (the model was built for another text or "
                "tokenizer); leave model.init_args.vocabulary unset so the CLI fills it from the data"
            )

    # -- optimisation -----------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """Weight decay on weight matrices only; none on norms, biases, embeddings (decoupled, AdamW)."""
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        embeddings = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        for param in self.parameters():
            if not param.requires_grad:
                continue
            (decay if param.dim() >= 2 and id(param) not in embeddings else no_decay).append(param)
        return [
            {"params": decay, "weight_decay": self.hparams.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def _decay_steps(self) -> int:
        if self.hparams.lr_decay_steps:
            return int(self.hparams.lr_decay_steps)
        trainer = self._trainer
        if trainer is not None and trainer.max_steps and trainer.max_steps > 0:
            return int(trainer.max_steps)
        if trainer is not None:
            estimated = trainer.estimated_stepping_batches
            if math.isfinite(estimated):
                return int(estimated)
        raise ValueError("set model.init_args.lr_decay_steps or trainer.max_steps: the cosine schedule needs a length")

    def _time_progress(self) -> float:
        """Fraction of the Trainer's ``max_time`` spent in fit so far (0 unless ``lr_schedule`` is ``time``)."""
        if self.hparams.get("lr_schedule", "steps") != "time" or self._trainer is None:
            return 0.0
        return time_progress(self._trainer, "CharLM")

    def lr_factor(self, step: int) -> float:
        """Multiplier of the peak lr at optimizer step ``step``: linear warmup, cosine to ``min_lr_ratio``.

        With ``lr_schedule: time`` the cosine follows whichever budget is further spent, steps or time.
        """
        hp = self.hparams
        return warmup_cosine(step, hp.warmup_steps, self._decay_steps(), hp.min_lr_ratio, self._time_progress())

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        if self.hparams.get("lr_schedule") == "time":
            fit_timer(self._trainer, "CharLM")  # fail now, with the fix, rather than at the first scheduler step
        optimizer = torch.optim.AdamW(self.param_groups(), lr=self.hparams.lr, betas=tuple(self.hparams.betas))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- generation ---------------------------------------------------------------------------
    @torch.no_grad()
    def generate_ids(
        self,
        prompt: list[int],
        num_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        window: int | None = -1,
    ) -> Iterator[int]:
        """Yield ``num_tokens`` sampled token ids one at a time after ``prompt`` (incremental decoding).

        Each layer keeps its backend's decoding state: O(1) per token for recurrent backends (linear
        attention), a growing key/value cache for softmax. ``window`` bounds a non-recurrent
        backend's context: at ``window`` tokens it restarts from the last ``window // 2`` (as in
        training, positions stay below the block size). ``-1`` (default) uses ``block_size``;
        ``None`` never restarts (the cache grows without bound).
        """
        if not prompt:
            raise ValueError("generation needs a non-empty prompt")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        was_training = self.training
        self.eval()
        self.stack.reset_memory(None)
        if window == -1:
            window = self.hparams.get("block_size")
        recurrent = self.stack.init_decoding().recurrent  # declared by each layer's DecodingState
        history = list(prompt)
        cache, logits = self._prefill(history[-window:] if window and not recurrent else history)
        try:
            for _ in range(num_tokens):
                next_id = sample_next(logits, temperature, top_k, generator)
                yield next_id
                history.append(next_id)
                if window and not recurrent and cache.position >= window:
                    cache, logits = self._prefill(history[-(window // 2) :])
                else:
                    logits = self._step_logits(next_id, cache)
        finally:
            self.train(was_training)

    def _step_logits(self, token: int, cache: DecodingCache) -> Tensor:
        emb = self.embed(torch.tensor([[token]], device=self.device))
        hidden = self.stack.step(emb, cache)
        return F.linear(hidden[0, -1], self.embed.weight)

    def _prefill(self, tokens: list[int]) -> tuple[DecodingCache, Tensor]:
        cache = self.stack.init_decoding()
        logits = torch.empty(0)
        for token in tokens:
            logits = self._step_logits(token, cache)
        return cache, logits

    # -- checkpoints --------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str, map_location: str | torch.device = "cpu") -> CharLM:
        """Rebuild a model from a Lightning checkpoint read with ``torch.load(weights_only=True)``."""
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
        hparams = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")}
        hparams["compile"] = False
        model = cls(**hparams)
        model.load_state_dict(checkpoint["state_dict"])
        return model.eval()


def sample_next(logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> int:
    """Sample one id from logits ``[vocab]`` (greedy when ``temperature == 0``; top-k filtered if set)."""
    logits = logits.float()
    if temperature == 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k is not None and 0 < top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))
