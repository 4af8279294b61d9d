"""External key-value memory in the manner of Memorizing Transformers (Wu et al., ICLR 2022).

A transformer only sees its context window. :class:`KVMemory` gives one attention layer a store of
the keys and values it produced on *earlier* windows of the same stream, so a query can find a token
that left the window long ago:

1. every query retrieves the ``top_k`` stored keys with the largest dot product (the same scaled
   scores as local attention, so a head that learned a lookup locally can reuse it on the memory),
   and reads their values with a softmax over those ``top_k``;
2. the retrieved read-out is mixed with the local attention output through a learned per-head gate,
   ``out = g_h * memory + (1 - g_h) * local`` with ``g_h = sigmoid(gate_h)``; queries of a stream whose
   memory is still empty keep the local output unchanged;
3. after retrieval, the window's keys and values are appended to the memory, detached (the memory
   is a cache, not part of the graph: gradients reach the queries and the gate only).

Memory layout and rules:

* one memory per stream (batch row): ``keys, values [streams, capacity, heads, head_dim]``; batch row
  ``b`` of consecutive forward passes must be consecutive windows of the same stream;
* **eviction**: a FIFO ring buffer per stream; once ``capacity`` entries are stored, each new entry
  overwrites the oldest one;
* **clearing**: :meth:`reset` (all or selected streams) at document boundaries; the module also
  clears everything by itself when the model switches between train and eval mode (training memory
  never leaks into evaluation and vice versa) and when the batch size changes;
* **checkpoints**: the memory is saved through ``get_extra_state`` (part of ``state_dict``), so a
  resumed run continues with the memory it had. It is deliberately *not* a registered buffer:
  DistributedDataParallel broadcasts buffers from rank 0 on every forward pass, which would
  overwrite each rank's own streams, and the shape depends on the batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from laart_lab.components.memory import MemoryModule

__all__ = ["KVMemory", "StreamMemory"]


@dataclass
class StreamMemory:
    """The stored entries of every stream: a FIFO ring buffer of ``capacity`` slots per stream.

    Updates are out of place: the tensors read by this step's retrieval are still needed by its
    backward pass.
    """

    keys: Tensor  # [streams, capacity, heads, head_dim]
    values: Tensor  # [streams, capacity, heads, head_dim]
    length: Tensor  # [streams] valid entries
    cursor: Tensor  # [streams] next slot to write

    FIELDS: ClassVar[tuple[str, ...]] = ("keys", "values", "length", "cursor")

    @classmethod
    def empty(cls, streams: int, capacity: int, heads: int, head_dim: int, like: Tensor) -> StreamMemory:
        shape = (streams, capacity, heads, head_dim)
        counters = torch.zeros(streams, dtype=torch.long, device=like.device)
        return cls(like.new_zeros(shape), like.new_zeros(shape), counters, counters.clone())

    def follow(self, like: Tensor) -> None:
        """Move to ``like``'s device and dtype (after ``model.to(...)`` or a checkpoint load)."""
        if self.keys.device != like.device or self.keys.dtype != like.dtype:
            self.keys, self.values = self.keys.to(like), self.values.to(like)
            self.length, self.cursor = self.length.to(like.device), self.cursor.to(like.device)

    def clear(self, streams: Tensor) -> None:
        keep = (~streams).to(self.keys.dtype)[:, None, None, None]
        self.length = self.length.masked_fill(streams, 0)
        self.cursor = self.cursor.masked_fill(streams, 0)
        self.keys, self.values = self.keys * keep, self.values * keep

    def append(self, k: Tensor, v: Tensor) -> None:
        """Write ``[streams, seq, heads, head_dim]`` at each stream's cursor, overwriting the oldest entries."""
        capacity = self.keys.shape[1]
        b, t = k.shape[:2]
        skip = max(0, t - capacity)  # only the newest ``capacity`` entries can survive anyway
        k, v, t = k[:, skip:], v[:, skip:], t - skip
        slots = (self.cursor[:, None] + skip + torch.arange(t, device=k.device)[None, :]) % capacity  # [B, t]
        rows = torch.arange(b, device=k.device)[:, None].expand(b, t)
        self.keys = self.keys.index_put((rows, slots), k.to(self.keys.dtype))
        self.values = self.values.index_put((rows, slots), v.to(self.values.dtype))
        self.cursor = (self.cursor + skip + t) % capacity
        self.length = (self.length + t).clamp(max=capacity)


class KVMemory(MemoryModule):
    """Per-stream external key-value memory with top-k retrieval and a learned per-head gate.

    Args:
        d_model: model width (given by the model).
        n_heads: attention heads (given by the model).
        capacity: entries kept per stream and head (tokens); FIFO eviction beyond it.
        top_k: stored entries each query reads (clipped to what is stored).
        gate_init: initial gate logit per head (0 -> the memory gets half the weight).
        value_shift: 0 stores each position's key with its own value (Memorizing Transformers); 1 stores
            the key of position ``t`` with the value of ``t + 1`` (kNN-LM style "what came next"), so a
            query retrieves what followed an earlier occurrence of the same content without needing an
            induction circuit; pairs crossing a window boundary are not stored.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        capacity: int = 1024,
        top_k: int = 32,
        gate_init: float = 0.0,
        value_shift: int = 0,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"KVMemory: d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if capacity < 1 or top_k < 1:
            raise ValueError(f"KVMemory: capacity and top_k must be >= 1, got capacity={capacity}, top_k={top_k}")
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        if value_shift not in (0, 1):
            raise ValueError(f"KVMemory: value_shift must be 0 or 1, got {value_shift}")
        self.capacity, self.top_k, self.value_shift = capacity, top_k, value_shift
        self.gate = nn.Parameter(torch.full((n_heads,), float(gate_init)))
        self.store: StreamMemory | None = None  # allocated at the first forward pass (needs the batch size)
        self._mode: bool | None = None  # training flag of the last forward pass

    # ------------------------------------------------------------------ state
    @property
    def streams(self) -> int:
        """Number of streams currently held (0 before the first forward pass or after a full reset)."""
        return 0 if self.store is None else self.store.keys.shape[0]

    def stored(self) -> Tensor:
        """Valid entries per stream ``[streams]`` (empty tensor when nothing is allocated)."""
        return torch.zeros(0, dtype=torch.long) if self.store is None else self.store.length.clone()

    def reset(self, streams: Tensor | None = None) -> None:
        """Forget all streams (``None``) or those where the bool mask ``streams [batch]`` is True."""
        if streams is None or self.store is None:
            self.store = None
            return
        streams = streams.to(device=self.store.keys.device, dtype=torch.bool)
        if streams.shape != (self.streams,):
            # A different batch size means different streams: nothing stored can be continued.
            self.store = None
            return
        self.store.clear(streams)

    def get_extra_state(self) -> dict[str, Any]:
        """Memory contents for ``state_dict`` (plain tensors and ints: loads with ``weights_only=True``)."""
        state: dict[str, Any] = {"streams": self.streams, "mode": -1 if self._mode is None else int(self._mode)}
        if self.store is not None:
            state.update({name: getattr(self.store, name).detach().cpu() for name in StreamMemory.FIELDS})
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        mode = int(state.get("mode", -1))
        self._mode = None if mode < 0 else bool(mode)
        if int(state.get("streams", 0)) == 0:
            self.store = None
            return
        keys = state["keys"]
        if tuple(keys.shape[1:]) != (self.capacity, self.n_heads, self.head_dim):
            raise ValueError(
                f"KVMemory checkpoint holds memory of shape {tuple(keys.shape[1:])} per stream but this module "
                f"expects {(self.capacity, self.n_heads, self.head_dim)}; "
                "build it with the same capacity, d_model and n_heads"
            )
        device = self.gate.device
        self.store = StreamMemory(*(state[name].to(device) for name in StreamMemory.FIELDS))

    # ------------------------------------------------------------------ forward hook
    def _sync(self, batch: int, like: Tensor) -> StreamMemory:
        """Clear on a train/eval switch or a batch-size change; allocate lazily; follow the device."""
        if self._mode is not None and self._mode != self.training:
            self.store = None
        self._mode = self.training
        if self.store is not None and self.streams != batch:
            self.store = None
        if self.store is None:
            self.store = StreamMemory.empty(batch, self.capacity, self.n_heads, self.head_dim, like)
        else:
            self.store.follow(like)
        return self.store

    def retrieve(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """Top-k read-out ``[batch, seq, heads, head_dim]`` and a ``[batch]`` flag "this stream has memory"."""
        store = self._sync(q.shape[0], q)
        d = q.shape[-1]
        keys = store.keys.permute(0, 2, 3, 1)  # [B, H, D, C]
        scores = torch.matmul(q.transpose(1, 2), keys) / math.sqrt(d)  # [B, H, T, C]
        valid = torch.arange(self.capacity, device=q.device)[None, :] < store.length[:, None]  # [B, C]
        scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
        top, index = scores.topk(min(self.top_k, self.capacity), dim=-1)  # [B, H, T, k]
        weights = torch.softmax(top, dim=-1).nan_to_num(0.0)  # rows with no valid entry -> all zero
        dense = torch.zeros_like(scores).scatter(-1, index, weights)  # [B, H, T, C]
        out = torch.matmul(dense, store.values.transpose(1, 2))  # [B, H, T, D]
        return out.transpose(1, 2), store.length > 0

    def write(self, k: Tensor, v: Tensor) -> None:
        """Append a window's keys/values ``[batch, seq, heads, head_dim]`` (detached) to each stream's ring."""
        k, v = k.detach(), v.detach()
        if self.value_shift:
            k, v = k[:, : -self.value_shift], v[:, self.value_shift :]
        if k.shape[1]:
            self._sync(k.shape[0], k).append(k, v)

    def mix_attention(self, q: Tensor, k: Tensor, v: Tensor, local_out: Tensor) -> Tensor:
        if q.dim() != 4 or q.shape[2:] != (self.n_heads, self.head_dim):
            raise ValueError(
                f"KVMemory expects q/k/v [batch, seq, {self.n_heads}, {self.head_dim}], got {tuple(q.shape)}"
            )
        memory_out, has_memory = self.retrieve(q)
        gate = torch.sigmoid(self.gate).to(local_out.dtype)[None, None, :, None]
        mixed = gate * memory_out.to(local_out.dtype) + (1 - gate) * local_out
        out = torch.where(has_memory[:, None, None, None], mixed, local_out)
        self.write(k, v)
        return out

    def extra_repr(self) -> str:
        return (
            f"heads={self.n_heads}, head_dim={self.head_dim}, capacity={self.capacity}, top_k={self.top_k}, "
            f"value_shift={self.value_shift}"
        )
