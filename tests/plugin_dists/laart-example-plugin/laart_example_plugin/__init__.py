"""A third-party attention backend: exact softmax attention restricted to a sliding window.

It depends on laart_lab only through the public plugin API (``laart_lab.hookimpl`` and
``laart_lab.components``), as any external package would.
"""

from __future__ import annotations

import torch
from torch import Tensor

import laart_lab
from laart_lab.components import AttentionBackend, check_qkv


class SlidingWindowAttention(AttentionBackend):
    """Each query attends to the ``window`` keys nearest to it (its own position included)."""

    def __init__(self, window: int = 8) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window

    def forward(
        self, q: Tensor, k: Tensor, v: Tensor, causal: bool = False, key_padding_mask: Tensor | None = None
    ) -> Tensor:
        check_qkv(q, k, v, key_padding_mask)
        tq, tk = q.shape[1], k.shape[1]
        query_pos = torch.arange(tq, device=q.device)[:, None] + (tk - tq)
        key_pos = torch.arange(tk, device=q.device)[None, :]
        offset = query_pos - key_pos
        allowed = (offset < self.window) & (offset >= 0) if causal else offset.abs() < self.window
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
        mask = allowed[None, None]
        if key_padding_mask is not None:
            mask = mask & key_padding_mask[:, None, None, :]
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1).nan_to_num(0.0)
        return torch.einsum("bhqk,bkhd->bqhd", weights, v)


@laart_lab.hookimpl
def register_attention(register) -> None:
    register("sliding_window", SlidingWindowAttention)
