"""The tensor contracts shared by the kernels and the attention backends built on them.

They live here, below :mod:`laart_lab.components`, so that kernels never import from components
(components import from kernels, and re-export these names for plugin authors):

* :func:`check_qkv` -- the ``[batch, seq, heads, dim]`` layout and mask contract (spelt out in the
  docstring of :mod:`laart_lab.components.attention`);
* :class:`DecodingState` -- a per-sequence state that generates one token at a time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor


class DecodingState(ABC):
    """State for generating one token at a time (see ``AttentionBackend.decoding_state``)."""

    recurrent: ClassVar[bool] = False
    """Whether the state has a fixed size whatever the number of tokens consumed (O(1) per token).

    A recurrent state can run on without bound; a non-recurrent one (a key/value cache, the
    default) grows with every token, so generation restarts it at the model's window. Declare
    ``recurrent = True`` on a subclass only when its memory and per-token cost do not grow with t.
    """

    @abstractmethod
    def step(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Consume one token's ``q, k, v`` (each ``[batch, 1, heads, dim]``); return ``[batch, 1, heads, v_dim]``."""


def check_qkv(q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None = None) -> None:
    """Raise a clear ``ValueError`` when tensors break the layout contract (shared by all backends)."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            "attention expects q, k, v laid out [batch, seq, heads, head_dim]; got shapes "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape[:3] != v.shape[:3] or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(
            f"attention shapes disagree: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} "
            "(batch and heads must match; k and v must share seq length)"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k head_dim differ: {q.shape[-1]} vs {k.shape[-1]}")
    if key_padding_mask is not None and (
        key_padding_mask.dtype != torch.bool or tuple(key_padding_mask.shape) != (k.shape[0], k.shape[1])
    ):
        raise ValueError(
            "key_padding_mask must be a bool tensor [batch, kv_len] (True = real key); got "
            f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}"
        )
