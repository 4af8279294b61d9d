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
``[B, N, d_input]``, choose the prediction shape (``out_shape``: classes last) and pass the
hyper-parameters as one :class:`laart_ctm.config.CTMConfig`. The laart_lab
reasoner (:mod:`laart_ctm.reasoner`) and the parity model (:mod:`laart_ctm.parity`) both wrap it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from laart_ctm.certainty import select_ticks, tick_certainty
from laart_ctm.config import CTMConfig
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
        config: every other hyper-parameter (:class:`laart_ctm.config.CTMConfig`, checked when it is made).
    """

    def __init__(self, d_input: int, out_shape: Sequence[int], config: CTMConfig | None = None) -> None:
        super().__init__()
        config = CTMConfig() if config is None else config
        out_shape = [int(size) for size in out_shape]
        if d_input < 1:
            raise ValueError(f"ContinuousThoughtMachine: d_input must be >= 1; got {d_input}")
        if not out_shape or min(out_shape) < 1:
            raise ValueError(
                f"ContinuousThoughtMachine: out_shape must be sizes >= 1, classes last; got {out_shape}"
            )
        self.config = config
        self.iterations, self.d_model, self.memory_length = (
            config.iterations,
            config.d_model,
            config.memory_length,
        )
        self.out_shape = out_shape

        d_model, d_attention = config.d_model, config.d_attention
        self.kv_proj = nn.Sequential(nn.Linear(d_input, d_attention), nn.LayerNorm(d_attention))
        self.sync_action = Synchronisation(
            d_model, config.n_sync_action, config.self_pairs, config.pairing_seed, config.action_decay_init
        )
        self.sync_out = Synchronisation(
            d_model, config.n_sync_out, config.self_pairs, config.pairing_seed + 1, config.out_decay_init
        )
        self.q_proj = nn.Linear(config.n_sync_action, d_attention)
        self.attention = nn.MultiheadAttention(
            d_attention, config.heads, dropout=config.dropout, batch_first=True
        )
        self.synapse = make_synapse(d_attention + d_model, d_model, config.synapse_depth, config.dropout)
        self.neurons = NeuronLevelModels(
            d_model, config.memory_length, config.nlm_hidden, config.dropout, config.nlm_init_gain
        )
        self.output = nn.Linear(config.n_sync_out, math.prod(out_shape))

        self.start_post = nn.Parameter(torch.empty(d_model).uniform_(-(d_model**-0.5), d_model**-0.5))
        bound = (d_model + config.memory_length) ** -0.5
        self.start_trace = nn.Parameter(torch.empty(d_model, config.memory_length).uniform_(-bound, bound))

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
