"""The Continuous Thought Machine core (Darlow et al., 2025) as a plain ``nn.Module``.

The CTM "thinks" for a fixed number of internal ticks ``T`` that is independent of the input's
length. At each tick it

1. reads the *action* synchronisation of its neurons and turns it into an attention query;
2. attends over the input tokens it was given (keys/values), once, with multi-head attention;
3. runs the *synapse model* over ``[attention output ; current post-activations]`` to get every
   neuron's next pre-activation, appended to a rolling history of the last ``M`` pre-activations;
4. runs the *neuron-level models*: each neuron maps its own history through private weights to its
   new post-activation;
5. reads the *output* synchronisation and projects it to a prediction, whose certainty is
   ``1 - normalised entropy``.

The core knows nothing of Lightning or of the task: callers embed their inputs as tokens
``[B, N, d_input]`` and choose the prediction shape (``out_shape``: classes last). The laart_lab
reasoner (:mod:`laart_ctm.reasoner`) and the parity model (:mod:`laart_ctm.parity`) both wrap it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from laart_ctm.certainty import select_ticks, tick_certainty
from laart_ctm.nlm import NeuronLevelModels
from laart_ctm.synapse import make_synapse
from laart_ctm.synchronisation import Synchronisation


@dataclass
class CTMOutput:
    """Everything the CTM produced, tick by tick."""

    logits: Tensor  #: [B, T, *out_shape] prediction at every tick (classes last)
    certainty: Tensor  #: [B, T] 1 - normalised entropy, averaged over prediction positions
    post_activations: Tensor  #: [B, T, D] neuron outputs at every tick
    attention: Tensor  #: [B, T, N] attention weights (averaged over heads) at every tick

    def most_certain_tick(self) -> Tensor:
        """long [B]: the tick at which each example is most certain."""
        return self.certainty.argmax(dim=1)

    def at_ticks(self, ticks: Tensor) -> Tensor:
        """The prediction at chosen ticks -> [B, *out_shape]: ``ticks`` long [B] (one tick per example)
        or long [B, *out_shape[:-1]] (one tick per prediction position)."""
        return select_ticks(self.logits, ticks)

    def prediction(self, tick: str = "certain") -> Tensor:
        """Logits at the most-certain tick (``"certain"``) or at the last tick (``"last"``)."""
        if tick == "certain":
            return self.at_ticks(self.most_certain_tick())
        if tick == "last":
            return self.logits[:, -1]
        raise ValueError(f"tick must be 'certain' or 'last'; got {tick!r}")


class ContinuousThoughtMachine(nn.Module):
    """A CTM over caller-provided input tokens; see the module docstring for one tick's steps.

    Args:
        d_input: width of the input tokens the caller passes to :meth:`forward`.
        out_shape: prediction shape per tick, classes last (``[num_classes]`` or ``[positions, classes]``).
        iterations: internal ticks ``T``.
        d_model: number of neurons ``D``.
        memory_length: pre-activation history ``M`` each neuron model reads.
        heads: attention heads; ``d_attention`` must be divisible by it.
        d_attention: width of the attention (keys, values, query and its output).
        n_sync_out: neuron pairs whose synchronisation is the output representation.
        n_sync_action: neuron pairs whose synchronisation forms the attention query.
        self_pairs: how many of the pairs of each read-out pair a neuron with itself.
        synapse_depth: 1 for an MLP synapse, > 1 for a U-Net synapse.
        nlm_hidden: hidden width of each neuron's private MLP (0: a single private GLU layer).
        nlm_init_gain: scale of the NLMs' initial weights (1: the paper's init; see
            :class:`laart_ctm.nlm.NeuronLevelModels`).
        dropout: dropout in synapse, NLMs and attention.
        pairing_seed: seed of the random choice of synchronised neuron pairs.
        action_decay_init, out_decay_init: initial decay rate r of every pair (the paper: 0, i.e. all ticks
            weigh the same). A positive action decay makes the attention query follow recent ticks, which
            helps tasks that must move their attention from token to token (parity).
    """

    def __init__(
        self,
        d_input: int,
        out_shape: Sequence[int],
        iterations: int = 16,
        d_model: int = 128,
        memory_length: int = 8,
        heads: int = 4,
        d_attention: int = 64,
        n_sync_out: int = 64,
        n_sync_action: int = 32,
        self_pairs: int = 0,
        synapse_depth: int = 1,
        nlm_hidden: int = 8,
        dropout: float = 0.0,
        pairing_seed: int = 0,
        action_decay_init: float = 0.0,
        out_decay_init: float = 0.0,
        nlm_init_gain: float = 1.0,
    ) -> None:
        super().__init__()
        out_shape = [int(size) for size in out_shape]
        checks = {
            "d_input": d_input >= 1,
            "out_shape": len(out_shape) >= 1 and all(size >= 1 for size in out_shape),
            "iterations": iterations >= 1,
            "d_model": d_model >= 1,
            "memory_length": memory_length >= 1,
            "heads": heads >= 1 and d_attention % heads == 0,
            "n_sync_out": n_sync_out >= 1,
            "n_sync_action": n_sync_action >= 1,
            "self_pairs": 0 <= self_pairs <= min(n_sync_out, n_sync_action),
            "dropout": 0.0 <= dropout < 1.0,
            "action_decay_init": 0.0 <= action_decay_init <= 15.0,
            "out_decay_init": 0.0 <= out_decay_init <= 15.0,
            "nlm_init_gain": nlm_init_gain > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"invalid ContinuousThoughtMachine arguments: {', '.join(bad)} (got d_input={d_input}, "
                f"out_shape={out_shape}, iterations={iterations}, d_model={d_model}, "
                f"memory_length={memory_length}, heads={heads}, d_attention={d_attention}, "
                f"n_sync_out={n_sync_out}, n_sync_action={n_sync_action}, self_pairs={self_pairs}, "
                f"dropout={dropout}, nlm_init_gain={nlm_init_gain}). Sizes must be >= 1, d_attention "
                "divisible by heads, 0 <= self_pairs <= n_sync_*, 0 <= dropout < 1, decay inits in [0, 15], "
                "nlm_init_gain > 0."
            )
        self.iterations, self.d_model, self.memory_length = iterations, d_model, memory_length
        self.out_shape = out_shape

        self.kv_proj = nn.Sequential(nn.Linear(d_input, d_attention), nn.LayerNorm(d_attention))
        self.sync_action = Synchronisation(
            d_model, n_sync_action, self_pairs, pairing_seed, action_decay_init
        )
        self.sync_out = Synchronisation(d_model, n_sync_out, self_pairs, pairing_seed + 1, out_decay_init)
        self.q_proj = nn.Linear(n_sync_action, d_attention)
        self.attention = nn.MultiheadAttention(d_attention, heads, dropout=dropout, batch_first=True)
        self.synapse = make_synapse(d_attention + d_model, d_model, synapse_depth, dropout)
        self.neurons = NeuronLevelModels(d_model, memory_length, nlm_hidden, dropout, nlm_init_gain)
        self.output = nn.Linear(n_sync_out, math.prod(out_shape))

        self.start_post = nn.Parameter(torch.empty(d_model).uniform_(-(d_model**-0.5), d_model**-0.5))
        bound = (d_model + memory_length) ** -0.5
        self.start_trace = nn.Parameter(torch.empty(d_model, memory_length).uniform_(-bound, bound))

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> CTMOutput:
        """Think ``iterations`` ticks over ``tokens`` [B, N, d_input] (``mask`` bool [B, N]: real tokens)."""
        batch = tokens.shape[0]
        kv = self.kv_proj(tokens)
        ignore = None
        if mask is not None:
            ignore = ~mask.bool()
            ignore[:, 0] &= mask.any(dim=1)  # an all-padding row attends to its first slot instead of NaN
        trace = self.start_trace.unsqueeze(0).expand(batch, -1, -1)
        post = self.start_post.unsqueeze(0).expand(batch, -1)
        factor_action, factor_out = self.sync_action.decay_factor(), self.sync_out.decay_factor()
        _, out_state = self.sync_out.step(post, None, factor_out)
        action_state = None

        logits, posts, attentions = [], [], []
        for _ in range(self.iterations):
            sync_action, action_state = self.sync_action.step(post, action_state, factor_action)
            query = self.q_proj(sync_action).unsqueeze(1)
            attended, weights = self.attention(query, kv, kv, key_padding_mask=ignore, need_weights=True)
            pre = self.synapse(torch.cat([attended.squeeze(1), post], dim=-1))
            trace = torch.cat([trace[:, :, 1:], pre.unsqueeze(-1)], dim=-1)
            post = self.neurons(trace)
            sync_out, out_state = self.sync_out.step(post, out_state, factor_out)
            logits.append(self.output(sync_out).view(batch, *self.out_shape))
            posts.append(post)
            attentions.append(weights.squeeze(1))

        stacked = torch.stack(logits, dim=1)
        return CTMOutput(
            logits=stacked,
            certainty=tick_certainty(stacked),
            post_activations=torch.stack(posts, dim=1),
            attention=torch.stack(attentions, dim=1),
        )
