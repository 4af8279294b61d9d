"""Reusable pre-norm transformer pieces, written once against the attention and memory contracts.

Everything here is a plain ``nn.Module`` (no Lightning), so any LightningModule in ``laart_lab.models``
can stack these blocks. The attention operator is never constructed here: a block receives an
:class:`~laart_lab.components.AttentionBackend` instance and a stack receives an
:data:`~laart_lab.components.AttentionFactory` that it calls once per layer, so any registered backend
(softmax, linear, third-party) plugs in unchanged.

Two ways to run a stack:

* **parallel** (training, scoring): ``stack(h)`` on a whole window ``[batch, seq, d_model]``;
* **incremental** (generation): ``cache = stack.init_decoding()`` then ``stack.step(h_t, cache)`` once
  per token; each layer keeps its backend's :meth:`~AttentionBackend.decoding_state`, which is
  O(1) per token for linear attention and a growing key/value cache for softmax.

Both paths compute the same function (tested), so a model can generate with either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from laart_lab.components.attention import AttentionBackend, AttentionFactory, DecodingState
from laart_lab.components.memory import MemoryFactory, MemoryModule

NormKind = Literal["rmsnorm", "layernorm"]
MlpKind = Literal["gelu", "swiglu"]
PositionKind = Literal["rotary", "learned", "none"]

__all__ = [
    "DecodingCache",
    "Mlp",
    "RotaryEmbedding",
    "SelfAttention",
    "TransformerBlock",
    "TransformerStack",
    "apply_rotary",
    "make_norm",
]


def make_norm(kind: NormKind, d_model: int) -> nn.Module:
    """RMSNorm (no bias, cheaper) or LayerNorm; both learn a per-channel gain."""
    if kind == "rmsnorm":
        return nn.RMSNorm(d_model, eps=1e-6)
    if kind == "layernorm":
        return nn.LayerNorm(d_model)
    raise ValueError(f"norm must be 'rmsnorm' or 'layernorm', got {kind!r}")


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoFormer): rotates channel pairs of q and k by position-dependent angles.

    Computed on the fly from absolute positions, so there is no maximum length and incremental
    decoding only needs the current position.
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary positions need an even head_dim, got {head_dim}")
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, length: int, offset: int = 0, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        """``cos, sin`` of shape ``[length, 1, head_dim/2]`` for positions ``offset .. offset+length-1``."""
        pos = torch.arange(offset, offset + length, device=device or self.inv_freq.device, dtype=torch.float32)
        angles = torch.outer(pos, self.inv_freq.to(pos.device))[:, None, :]
        return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` ``[batch, seq, heads, head_dim]`` (halves layout) by the given angles."""
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.type_as(x)


class Mlp(nn.Module):
    """Position-wise feed-forward: GELU (4x) or SwiGLU (8/3 x, rounded to a multiple of 8)."""

    def __init__(self, d_model: int, kind: MlpKind = "gelu", hidden: int | None = None, bias: bool = False) -> None:
        super().__init__()
        if kind not in ("gelu", "swiglu"):
            raise ValueError(f"mlp must be 'gelu' or 'swiglu', got {kind!r}")
        self.kind = kind
        if hidden is None:
            hidden = 4 * d_model if kind == "gelu" else 8 * ((8 * d_model // 3 + 7) // 8)
        self.up = nn.Linear(d_model, hidden * (2 if kind == "swiglu" else 1), bias=bias)
        self.down = nn.Linear(hidden, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.up(x)
        if self.kind == "swiglu":
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        else:
            h = F.gelu(h)
        return self.down(h)


class SelfAttention(nn.Module):
    """Multi-head self-attention around a pluggable backend: projections, rotary, memory hook, output.

    The memory module's :meth:`~MemoryModule.mix_attention` receives the *content* projections
    (before rotary), so keys it stores from earlier windows carry no window-relative position.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        attention: AttentionBackend,
        causal: bool = True,
        rotary: bool = True,
        bias: bool = False,
        memory: MemoryModule | None = None,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.causal = causal
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)
        self.backend: AttentionBackend = attention
        self.rotary = RotaryEmbedding(self.head_dim) if rotary else None
        self.memory = memory

    def project(self, x: Tensor, offset: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(q, k, v, q_content, k_content)`` per head ``[batch, seq, heads, head_dim]``.

        ``q, k`` carry rotary positions for tokens ``offset ..``; ``*_content`` are before rotary.
        Public so inspection callbacks can ask the backend for :meth:`attention_weights`.
        """
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).unbind(dim=2)
        qc, kc = q, k
        if self.rotary is not None:
            cos, sin = self.rotary(t, offset, device=x.device)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        return q, k, v, qc, kc

    def _finish(self, y: Tensor, qc: Tensor, kc: Tensor, v: Tensor) -> Tensor:
        if self.memory is not None:
            y = self.memory.mix_attention(qc, kc, v, y)
        b, t = y.shape[:2]
        return self.out(y.reshape(b, t, -1))

    def forward(self, x: Tensor, offset: int = 0, key_padding_mask: Tensor | None = None) -> Tensor:
        q, k, v, qc, kc = self.project(x, offset)
        y = self.backend(q, k, v, causal=self.causal, key_padding_mask=key_padding_mask)
        return self._finish(y, qc, kc, v)

    def attention_weights(self, x: Tensor, offset: int = 0) -> Tensor | None:
        """The backend's (implied, normalised) weights ``[batch, heads, seq, seq]`` over ``x``, or None.

        ``None`` when the backend cannot say (its ``attention_weights`` returns None).
        """
        q, k, _, _, _ = self.project(x, offset)
        return self.backend.attention_weights(q, k, causal=self.causal)

    def step(self, x: Tensor, position: int, state: DecodingState) -> Tensor:
        """One token ``[batch, 1, d_model]`` at absolute ``position`` through the backend's decoding state."""
        if not self.causal:
            raise RuntimeError("incremental decoding needs a causal block")
        q, k, v, qc, kc = self.project(x, position)
        y = state.step(q, k, v)
        return self._finish(y, qc, kc, v)


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``, then the memory's hidden hook.

    ``memory`` (optional) is called twice per forward: ``mix_attention`` on the per-head attention
    output and ``transform_hidden`` on the block's output ``[batch, seq, d_model]``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        attention: AttentionBackend,
        causal: bool = True,
        norm: NormKind = "rmsnorm",
        mlp: MlpKind = "gelu",
        dropout: float = 0.0,
        memory: MemoryModule | None = None,
        rotary: bool = True,
        bias: bool = False,
        mlp_hidden: int | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, d_model)
        self.attn: SelfAttention = SelfAttention(
            d_model, n_heads, attention, causal=causal, rotary=rotary, bias=bias, memory=memory
        )
        self.norm2 = make_norm(norm, d_model)
        self.mlp = Mlp(d_model, mlp, hidden=mlp_hidden, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.memory = memory

    def _mlp_and_memory(self, x: Tensor) -> Tensor:
        x = x + self.dropout(self.mlp(self.norm2(x)))
        if self.memory is not None:
            x = self.memory.transform_hidden(x)
        return x

    def forward(self, x: Tensor, offset: int = 0, key_padding_mask: Tensor | None = None) -> Tensor:
        x = x + self.dropout(self.attn(self.norm1(x), offset, key_padding_mask))
        return self._mlp_and_memory(x)

    def attention_weights(self, x: Tensor, offset: int = 0) -> Tensor | None:
        """This block's attention weights for input ``x`` (see :meth:`SelfAttention.attention_weights`)."""
        return self.attn.attention_weights(self.norm1(x), offset)

    def step(self, x: Tensor, position: int, state: DecodingState) -> Tensor:
        """Incremental form of :meth:`forward` for one token (dropout is a no-op in eval mode)."""
        x = x + self.dropout(self.attn.step(self.norm1(x), position, state))
        return self._mlp_and_memory(x)


@dataclass
class DecodingCache:
    """Per-layer decoding states plus the absolute position of the next token."""

    states: list[DecodingState]
    position: int = 0
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def recurrent(self) -> bool:
        """Every layer's state is fixed-size (:attr:`DecodingState.recurrent`): no window restarts needed."""
        return all(state.recurrent for state in self.states)


class TransformerStack(nn.Module):
    """``n_layers`` pre-norm blocks with positions and a final norm: ``[batch, seq, d_model]`` in and out.

    Args:
        attention: zero-argument factory returning an attention backend; called once per layer.
        position: ``"rotary"`` (applied to q/k in every layer, unbounded length), ``"learned"``
            (absolute embeddings added to the input, at most ``max_len`` positions) or ``"none"``.
        memory: optional ``factory(d_model, n_heads)``; the module goes into block ``memory_layer``
            (negative counts from the top, as in Python indexing).
    """

    def __init__(
        self,
        d_model: int,
        n_layers: int,
        n_heads: int,
        attention: AttentionFactory,
        causal: bool = True,
        norm: NormKind = "rmsnorm",
        mlp: MlpKind = "gelu",
        dropout: float = 0.0,
        position: PositionKind = "rotary",
        max_len: int = 1024,
        memory: MemoryFactory | None = None,
        memory_layer: int = -1,
        bias: bool = False,
        mlp_hidden: int | None = None,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        if position not in ("rotary", "learned", "none"):
            raise ValueError(f"position must be 'rotary', 'learned' or 'none', got {position!r}")
        if memory is not None and not -n_layers <= memory_layer < n_layers:
            raise ValueError(f"memory_layer {memory_layer} out of range for {n_layers} layers")
        self.position = position
        self.max_len = max_len
        self.memory_layer = memory_layer % n_layers
        self.memory: MemoryModule | None = memory(d_model, n_heads) if memory is not None else None
        if self.memory is not None and not isinstance(self.memory, MemoryModule):
            raise TypeError(f"memory factory must build a MemoryModule, got {type(self.memory).__name__}")
        self.pos_emb = nn.Embedding(max_len, d_model) if position == "learned" else None
        self.drop = nn.Dropout(dropout)
        blocks = []
        for i in range(n_layers):
            backend = attention()
            if not isinstance(backend, AttentionBackend):
                raise TypeError(f"attention factory must build an AttentionBackend, got {type(backend).__name__}")
            blocks.append(
                TransformerBlock(
                    d_model,
                    n_heads,
                    backend,
                    causal=causal,
                    norm=norm,
                    mlp=mlp,
                    dropout=dropout,
                    memory=self.memory if i == self.memory_layer else None,
                    rotary=position == "rotary",
                    bias=bias,
                    mlp_hidden=mlp_hidden,
                )
            )
        self.blocks = nn.ModuleList(blocks)
        self.norm = make_norm(norm, d_model)
        self.reset_parameters(n_layers)

    def reset_parameters(self, n_layers: int) -> None:
        """GPT-2 initialisation: N(0, 0.02) weights, residual output projections scaled by 1/sqrt(2L)."""
        for name, p in self.named_parameters():
            if name.startswith("memory.") or ".backend." in name or ".memory." in name:
                continue  # plugins initialise themselves
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * n_layers) if name.endswith(("out.weight", "down.weight")) else 0.02
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def _add_positions(self, h: Tensor, offset: int) -> Tensor:
        if self.pos_emb is not None:
            t = h.shape[1]
            if offset + t > self.max_len:
                raise ValueError(
                    f"learned positions cover {self.max_len} tokens; got position {offset + t - 1} "
                    "(use position='rotary' or a larger max_len)"
                )
            h = h + self.pos_emb(torch.arange(offset, offset + t, device=h.device))
        return self.drop(h)

    def forward(self, h: Tensor, offset: int = 0, key_padding_mask: Tensor | None = None) -> Tensor:
        """Run all blocks on embedded tokens ``h`` whose first position is ``offset``."""
        h = self._add_positions(h, offset)
        for block in self.blocks:
            h = block(h, offset, key_padding_mask)
        return self.norm(h)

    def attention_maps(self, h: Tensor, offset: int = 0) -> list[Tensor | None]:
        """Per layer, the backend's (implied, normalised) attention weights ``[batch, heads, seq, seq]``.

        ``h`` is embedded tokens as for :meth:`forward` (first position ``offset``); the stack runs
        as in :meth:`forward` and each layer reports the weights its attention puts on each key
        (None for a backend that cannot say). For inspection on short snippets: each map is
        ``seq x seq``. Wrap in ``torch.no_grad()`` and ``eval()`` as needed.
        """
        maps: list[Tensor | None] = []
        h = self._add_positions(h, offset)
        for block in self.blocks:
            maps.append(block.attention_weights(h, offset))
            h = block(h, offset)
        return maps

    def init_decoding(self) -> DecodingCache:
        """Fresh per-layer decoding states (the backend decides: recurrent O(1) or key/value cache)."""
        blocks = [cast(TransformerBlock, block) for block in self.blocks]
        return DecodingCache(states=[block.attn.backend.decoding_state() for block in blocks])

    def step(self, h: Tensor, cache: DecodingCache) -> Tensor:
        """Feed one embedded token ``[batch, 1, d_model]``; returns its final hidden state and advances ``cache``."""
        if h.shape[1] != 1:
            raise ValueError(f"step takes one token at a time, got seq length {h.shape[1]}")
        h = self._add_positions(h, cache.position)
        for block, state in zip(self.blocks, cache.states):
            h = block.step(h, cache.position, state)
        cache.position += 1
        return self.norm(h)

    def reset_memory(self, streams: Tensor | None = None) -> None:
        """Forward to the memory module's :meth:`~MemoryModule.reset` (no-op without memory)."""
        if self.memory is not None:
            self.memory.reset(streams)
