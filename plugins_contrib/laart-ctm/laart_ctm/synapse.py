"""Synapse models: the only place where neurons exchange information inside a tick.

The synapse reads the attention output (what the CTM just looked at) concatenated with the current
post-activations of all neurons and produces the next pre-activation of every neuron.

* depth 1: ``Linear -> GLU -> LayerNorm`` (an MLP, the paper's shallow synapse);
* depth > 1: a U-Net-shaped MLP, widths shrinking from ``D`` towards ``min_width`` and back, with
  skip connections between matching widths (the paper's deep synapse).
"""

from __future__ import annotations

from torch import Tensor, nn


def _block(d_in: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(d_in, d_out), nn.LayerNorm(d_out), nn.SiLU())


class SynapseMLP(nn.Module):
    """``[attention out ; post-activations] -> pre-activations`` through one GLU layer."""

    def __init__(self, d_in: int, neurons: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(d_in, 2 * neurons), nn.GLU(), nn.LayerNorm(neurons)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SynapseUNet(nn.Module):
    """A U-Net over feature width: down blocks to a bottleneck, up blocks with additive skips."""

    def __init__(
        self, d_in: int, neurons: int, depth: int, min_width: int = 16, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"SynapseUNet needs depth >= 2 (use SynapseMLP for depth 1); got {depth}")
        low = min(min_width, neurons)
        widths = [round(neurons - (neurons - low) * i / (depth - 1)) for i in range(depth)]
        self.first = _block(d_in, widths[0], dropout)
        self.down = nn.ModuleList(_block(widths[i], widths[i + 1], dropout) for i in range(depth - 1))
        self.up = nn.ModuleList(_block(widths[i + 1], widths[i], dropout) for i in range(depth - 1))
        self.skip_norms = nn.ModuleList(nn.LayerNorm(widths[i]) for i in range(depth - 1))

    def forward(self, x: Tensor) -> Tensor:
        skips = [self.first(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        out = skips[-1]
        for i in reversed(range(len(self.up))):
            out = self.skip_norms[i](self.up[i](out) + skips[i])
        return out


def make_synapse(d_in: int, neurons: int, depth: int, dropout: float = 0.0) -> nn.Module:
    """The synapse model for ``depth`` (1: MLP, more: U-Net)."""
    if depth < 1:
        raise ValueError(f"synapse_depth must be >= 1; got {depth}")
    return (
        SynapseMLP(d_in, neurons, dropout)
        if depth == 1
        else SynapseUNet(d_in, neurons, depth, dropout=dropout)
    )
