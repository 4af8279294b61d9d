"""Neuron-level models (NLMs): every neuron owns a private MLP over its recent pre-activations.

In a CTM a neuron's output (post-activation) is not a fixed nonlinearity of one number but a
learned function of the *history* of its last ``M`` inputs (pre-activations). Each of the ``D``
neurons has its own weights; nothing is shared between neurons. A batched einsum over per-neuron
weight tensors computes all ``D`` private models at once:

    hidden[b, d, h] = sum_m trace[b, d, m] * w1[m, h, d] + b1[d, h]

so neuron ``d`` only ever reads ``w1[..., d]`` (and its own trace row). The test suite checks this
property by perturbing one neuron's weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PerNeuronLinear(nn.Module):
    """``D`` independent linear maps ``in_dims -> out_dims``, one per neuron (a grouped linear)."""

    def __init__(self, neurons: int, in_dims: int, out_dims: int, init_gain: float = 1.0) -> None:
        super().__init__()
        bound = init_gain / math.sqrt(in_dims + out_dims)
        self.weight = nn.Parameter(torch.empty(in_dims, out_dims, neurons).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(neurons, out_dims))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [B, D, in_dims] -> [B, D, out_dims]."""
        # One batched matmul over neurons on contiguous [D, B, in] x [D, in, out] operands: the same
        # result as einsum("bdi,iod->bdo"), about twice as fast on CPU (einsum's bmm gets strided inputs).
        weight = self.weight.permute(2, 0, 1).contiguous()
        return torch.bmm(x.transpose(0, 1).contiguous(), weight).transpose(0, 1) + self.bias


class NeuronLevelModels(nn.Module):
    """Post-activations ``z[b, d] = g_d(trace[b, d, :])`` with a private (GLU) MLP per neuron.

    ``hidden > 0``: two private layers ``M -> 2*hidden -GLU-> hidden -> 2 -GLU-> 1`` (the paper's
    "deep NLMs"); ``hidden == 0``: one private layer ``M -> 2 -GLU-> 1``.

    ``init_gain`` scales the initial weights of every private layer (uniform in ``+-gain/sqrt(in+out)``,
    the paper's init at gain 1). With two GLU layers the post-activations start at about 0.03 standard
    deviation at gain 1, so products of neuron pairs (synchronisation) start near 1e-3: the attention
    query barely depends on the input or the tick. Gain 3 gives post-activations of about 0.4.
    """

    def __init__(
        self, neurons: int, memory_length: int, hidden: int = 8, dropout: float = 0.0, init_gain: float = 1.0
    ) -> None:
        super().__init__()
        if neurons < 1 or memory_length < 1 or hidden < 0 or not init_gain > 0:
            raise ValueError(
                f"NeuronLevelModels needs neurons >= 1, memory_length >= 1, hidden >= 0, init_gain > 0; "
                f"got {neurons}, {memory_length}, {hidden}, {init_gain}"
            )
        self.dropout = nn.Dropout(dropout)
        if hidden > 0:
            self.layers = nn.ModuleList(
                [
                    PerNeuronLinear(neurons, memory_length, 2 * hidden, init_gain),
                    PerNeuronLinear(neurons, hidden, 2, init_gain),
                ]
            )
        else:
            self.layers = nn.ModuleList([PerNeuronLinear(neurons, memory_length, 2, init_gain)])

    def forward(self, trace: Tensor) -> Tensor:
        """``trace`` [B, D, M] (oldest first) -> post-activations [B, D]."""
        x = self.dropout(trace)
        for layer in self.layers:
            x = F.glu(layer(x), dim=-1)
        return x.squeeze(-1)
