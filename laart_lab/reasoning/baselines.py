"""Baseline reasoners the SLRM must beat, on the same data and evaluation code.

* :class:`GRUReasoner` (``gru``): a (bi)GRU over the relation path, like the LSTM/GRU baselines of
  CLUTRR papers; it sees exactly what the SLRM sees, without any compositional structure.
* :class:`TransformerPathReasoner` (``transformer``): a small transformer encoder over the path.
* :class:`GNNReasoner` (``gnn``): a relational message-passing network over the story graph (nodes
  carry genders, messages depend on the edge relation, both directions), read out at the query pair,
  like the GNN baselines of CLUTRR (GAT/R-GCN style).
"""

from __future__ import annotations

import torch
from torch import nn

from laart_lab.components.reasoner import Reasoner, ReasonerOutput, ReasoningBatch


class GRUReasoner(Reasoner):
    """Embeds path relations, runs a GRU, classifies from the final states (both directions)."""

    def __init__(
        self, num_relations: int, dim: int = 64, layers: int = 1, bidirectional: bool = True, dropout: float = 0.0
    ) -> None:
        super().__init__(num_relations)
        self.embed = nn.Embedding(num_relations, dim)
        self.gru = nn.GRU(
            dim,
            dim,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.head = nn.Sequential(
            nn.Linear(dim * (2 if bidirectional else 1), dim), nn.GELU(), nn.Linear(dim, num_relations)
        )

    def forward(self, batch: ReasoningBatch) -> ReasonerOutput:
        lengths = batch.path_mask.sum(1).clamp_min(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embed(batch.path), lengths, batch_first=True, enforce_sorted=False
        )
        _, hidden = self.gru(packed)  # [layers * directions, B, dim]
        last = hidden.view(self.gru.num_layers, -1, hidden.shape[1], hidden.shape[2])[-1]  # [directions, B, dim]
        return ReasonerOutput(logits=self.head(torch.cat(list(last), dim=-1)))


class TransformerPathReasoner(Reasoner):
    """A transformer encoder over the path with a learned [CLS] slot and learned positions."""

    def __init__(self, num_relations: int, dim: int = 64, layers: int = 2, heads: int = 4, max_len: int = 64) -> None:
        super().__init__(num_relations)
        self.embed = nn.Embedding(num_relations + 1, dim)  # last id: [CLS]
        self.position = nn.Embedding(max_len + 1, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, num_relations)
        self.max_len = max_len

    def forward(self, batch: ReasoningBatch) -> ReasonerOutput:
        b, k = batch.path.shape
        if k > self.max_len:
            raise ValueError(f"path length {k} exceeds max_len={self.max_len} of TransformerPathReasoner")
        cls = torch.full((b, 1), self.num_relations, dtype=torch.long, device=batch.path.device)
        tokens = torch.cat([cls, batch.path], 1)
        x = self.embed(tokens) + self.position(torch.arange(k + 1, device=tokens.device))
        pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=tokens.device), ~batch.path_mask], 1)
        return ReasonerOutput(logits=self.head(self.encoder(x, src_key_padding_mask=pad)[:, 0]))


class GNNReasoner(Reasoner):
    """Relational message passing over the story graph, read out at the query's two nodes."""

    def __init__(self, num_relations: int, dim: int = 64, layers: int = 3) -> None:
        super().__init__(num_relations)
        self.gender = nn.Embedding(3, dim)
        self.relation = nn.Embedding(num_relations, dim)
        self.forward_msg = nn.ModuleList(nn.Linear(3 * dim, dim) for _ in range(layers))
        self.backward_msg = nn.ModuleList(nn.Linear(3 * dim, dim) for _ in range(layers))
        self.update = nn.ModuleList(nn.GRUCell(dim, dim) for _ in range(layers))
        self.head = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, num_relations))

    def forward(self, batch: ReasoningBatch) -> ReasonerOutput:
        b, n = batch.node_genders.shape
        offset = (torch.arange(b, device=batch.edges.device) * n).unsqueeze(1)
        valid = batch.edge_mask.reshape(-1)
        src = (batch.edges[..., 0] + offset).reshape(-1)[valid]
        dst = (batch.edges[..., 1] + offset).reshape(-1)[valid]
        rel = self.relation(batch.edges[..., 2].reshape(-1)[valid])
        h = self.gender(batch.node_genders).reshape(b * n, -1)
        for fwd, bwd, update in zip(self.forward_msg, self.backward_msg, self.update):
            messages = torch.zeros_like(h)
            messages.index_add_(0, dst, torch.relu(fwd(torch.cat([h[src], rel, h[dst]], -1))))
            messages.index_add_(0, src, torch.relu(bwd(torch.cat([h[dst], rel, h[src]], -1))))
            h = update(messages, h)
        h = h.view(b, n, -1)
        rows = torch.arange(b, device=h.device)
        pair = torch.cat([h[rows, batch.query[:, 0]], h[rows, batch.query[:, 1]]], -1)
        return ReasonerOutput(logits=self.head(pair))
