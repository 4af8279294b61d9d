"""Recurrent (RNN) form of causal linear attention, for generation one token at a time.

The whole past is summarised by ``S = Σ φ(k) vᵀ`` (``[batch, heads, D, E]``) and ``z = Σ φ(k)``
(``[batch, heads, D]``), kept in fp32, so each new token costs O(D·E) time and memory whatever the
number of tokens already seen -- unlike softmax, whose cache grows with t.
"""

from __future__ import annotations

import torch
from torch import Tensor

from laart_lab.kernels.contracts import DecodingState
from laart_lab.kernels.linear_attn.utils import (
    DEFAULT_OPTIONS,
    FeatureMap,
    accumulation_dtype,
    check_eps,
    check_feature_map,
    feature_map,
)


class LinearRecurrentState(DecodingState):
    """O(1)-per-token decoding state; equals causal parallel linear attention token by token."""

    recurrent = True

    def __init__(
        self, *, feature_map: FeatureMap = DEFAULT_OPTIONS["feature_map"], eps: float = DEFAULT_OPTIONS["eps"]
    ) -> None:
        self.feature_map = check_feature_map(feature_map)
        self.eps = check_eps(eps)
        self.state: Tensor | None = None  # [batch, heads, D, E], fp32
        self.normaliser: Tensor | None = None  # [batch, heads, D], fp32
        self.tokens_seen = 0

    def step(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Consume ``[batch, n, heads, dim]`` tokens in order (normally n == 1); return ``[batch, n, heads, E]``."""
        if q.dim() != 4 or q.shape[1] != k.shape[1] or k.shape[1] != v.shape[1]:
            raise ValueError(
                "decoding step expects q, k, v of shape [batch, n, heads, dim] with the same n; got "
                f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
            )
        acc = accumulation_dtype(q.dtype)
        if self.state is None:
            b, _, h, d = k.shape
            self.state = torch.zeros(b, h, d, v.shape[-1], dtype=acc, device=q.device)
            self.normaliser = torch.zeros(b, h, d, dtype=acc, device=q.device)
        assert self.normaliser is not None
        outs = []
        for t in range(q.shape[1]):
            qf = feature_map(q[:, t].to(acc), self.feature_map)  # [B, H, D]
            kf = feature_map(k[:, t].to(acc), self.feature_map)
            self.state += kf.unsqueeze(-1) * v[:, t].to(acc).unsqueeze(-2)
            self.normaliser += kf
            num = torch.einsum("bhd,bhde->bhe", qf, self.state)
            den = (qf * self.normaliser).sum(-1, keepdim=True)
            outs.append((num / (den + self.eps)).to(q.dtype))
            self.tokens_seen += 1
        return torch.stack(outs, dim=1)
