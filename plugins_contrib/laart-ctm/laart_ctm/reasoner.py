"""``CTMReasoner``: the CTM as a laart_lab relational reasoner (registered as ``ctm``).

The CTM attends over the story's *path view*: one token per relation along the chain from the
query's head to its tail (relation embedding + a fixed sinusoidal position code, so unseen longer
paths still get distinct, untrained-free positions). It thinks for ``iterations`` ticks regardless
of the path length and answers over the relation vocabulary at every tick.

The returned :class:`~laart_lab.components.ReasonerOutput` carries

* ``logits``: the answer at each example's most-certain tick (or last tick, ``predict_with: last``);
* ``extras["tick_logits"]`` [B, T, R] and ``extras["certainty"]`` [B, T]: every tick, used by
  :meth:`CTMReasoner.loss` (the certainty-based loss) and by the ``ctm_ticks`` callback;
* ``extras["most_certain_tick"]`` long [B].
"""

from __future__ import annotations

import math
from typing import Any

import torch
from laart_lab.components import Reasoner, ReasonerOutput, ReasoningBatch
from torch import Tensor, nn

from laart_ctm.certainty import certainty_loss
from laart_ctm.config import CTMReasonerConfig, check_ctm_fields, with_ctm_fields
from laart_ctm.core import ContinuousThoughtMachine


def sinusoidal_positions(length: int, width: int) -> Tensor:
    """The transformer's fixed sine/cosine position codes, ``[length, width]``."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10_000.0) / width))
    codes = torch.zeros(length, width)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency[: width // 2])
    return codes


@with_ctm_fields(CTMReasonerConfig)
class CTMReasoner(Reasoner):
    """A Continuous Thought Machine over the query path's relations.

    Args:
        num_relations: the relation vocabulary (given by the model).
        d_embed: width of the relation tokens (even: half sine, half cosine position code).
        max_path_length: the longest path accepted.
        predict_with: the tick whose answer is the prediction (``certain`` or ``last``).
        **ctm: the CTM's hyper-parameters, flat (``iterations=12, heads=4, ...``): the fields of
            :class:`laart_ctm.config.CTMReasonerConfig` (:class:`~laart_ctm.config.CTMConfig` with 12 ticks
            and a 6-step history by default).
    """

    positions: Tensor  #: [max_path_length, d_embed] fixed position codes (buffer)

    def __init__(
        self,
        num_relations: int,
        d_embed: int = 64,
        max_path_length: int = 64,
        predict_with: str = "certain",
        **ctm: Any,
    ) -> None:
        super().__init__(num_relations)
        if predict_with not in ("certain", "last"):
            raise ValueError(f"ctm reasoner: predict_with must be 'certain' or 'last'; got {predict_with!r}")
        if d_embed < 2 or d_embed % 2 or max_path_length < 1:
            raise ValueError(
                "ctm reasoner: d_embed must be even and >= 2, max_path_length >= 1; "
                f"got {d_embed}, {max_path_length}"
            )
        check_ctm_fields(CTMReasonerConfig, ctm, "ctm reasoner")
        config = CTMReasonerConfig(**ctm)  # written out: jsonargparse reads the flat fields off this call
        self.predict_with, self.max_path_length = predict_with, max_path_length
        self.relation_embedding = nn.Embedding(num_relations, d_embed)
        self.register_buffer("positions", sinusoidal_positions(max_path_length, d_embed), persistent=False)
        self.ctm = ContinuousThoughtMachine(d_embed, [num_relations], config)

    def forward(self, batch: ReasoningBatch) -> ReasonerOutput:
        length = batch.path.shape[1]
        if length > self.max_path_length:
            raise ValueError(
                f"ctm reasoner: a path of {length} relations exceeds max_path_length={self.max_path_length}; "
                "raise reasoner.init_args.max_path_length in the recipe"
            )
        tokens = self.relation_embedding(batch.path) + self.positions[:length]
        output = self.ctm(tokens, batch.path_mask)
        return ReasonerOutput(
            logits=output.prediction(self.predict_with),
            extras={
                "tick_logits": output.logits,
                "certainty": output.certainty,
                "most_certain_tick": output.most_certain_tick(),
            },
        )

    def loss(self, output: ReasonerOutput, target: Tensor) -> Tensor:
        """The CTM's certainty-based loss over ticks (plus ``aux_loss`` if some wrapper adds one)."""
        if "tick_logits" not in output.extras or "certainty" not in output.extras:
            return super().loss(output, target)
        loss = certainty_loss(output.extras["tick_logits"], output.extras["certainty"], target)
        if output.aux_loss is not None:
            loss = loss + output.aux_loss
        return loss
