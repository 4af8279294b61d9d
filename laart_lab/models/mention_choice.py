"""Which mentions a pair of people is read from, when no sentence names both.

The reader reads the pair ``(x, y)`` at the closest pair of their mentions, one sentence first
(:meth:`~laart_lab.models.story_reader.StoryReader._closest_mentions`). When no sentence names both, CLUTRR states the
fact across two sentences with a pronoun: "[Christopher] loves watching movies with his daughter. Her name is
[Guillermina]." The closest pair of mentions in tokens can then be the wrong one: an earlier "... her sister
[Guillermina]." right before "[Christopher] loves ..." is two tokens away, and the pair is read from the sister's
sentence. Validation stories read such facts right 77% of the time, against 99% for facts within a sentence.

:class:`LearnedMentionChoice` lets the reader learn where such a fact is stated: over every pair of mentions of x and
y, a learned score (query of x's mention · key of y's mention, and the same from y's side) plus a prior for
closeness (``-|distance| / 8`` tokens) is softmaxed, and x's and y's states are the mentions' states weighted by it
(mention-level attention, as document-level relation extraction pools mentions). At initialisation the prior makes it
close to the closest pair; the pair's loss teaches the score which pair states the fact.

Measured (README, "Facts said across two sentences"): trained, it does put its weight on the stating pair of
mentions, yet such facts are read right little more often (0.785 against 0.7725, seed 0): the limit is reading the
pronoun across the sentence boundary. An option, off in the recipes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from laart_lab.models.token_positions import states_at

#: the closeness prior: a mention pair this many tokens further apart is e times less likely to state the fact
DISTANCE_SCALE = 8.0


class LearnedMentionChoice(nn.Module):
    """Soft choice of the mention pair a pair of entities is read from (module docstring)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        nn.init.zeros_(self.query.weight)  # starts as the closeness prior alone
        nn.init.zeros_(self.query.bias)

    def forward(self, h: Tensor, position: Tensor, owner: Tensor, n_entities: int) -> tuple[Tensor, Tensor]:
        """States ``[B, E, E, D]`` of x and of y for every entity pair ``(x, y)``.

        Args:
            h: ``[B, T, D]`` token states; position: ``[B, M]`` each mention's token position;
            owner: ``[B, M]`` the entity each mention names, -1 for padding.
        """
        mention = states_at(h, position)  # [B, M, D]
        q, k = self.query(mention), self.key(mention)
        scale = mention.shape[-1] ** 0.5
        score = (q @ k.transpose(1, 2) + k @ q.transpose(1, 2)).float() / scale  # [B, Mi, Mj], symmetric
        distance = (position.unsqueeze(2) - position.unsqueeze(1)).abs().float()
        score = score - distance / DISTANCE_SCALE
        names = owner.unsqueeze(1) == torch.arange(n_entities, device=owner.device).unsqueeze(-1)  # [B, E, M]
        # usable[b, x, y, i, j]: mention i names x and mention j names y (padding, owner -1, names nobody)
        usable = names[:, :, None, :, None] & names[:, None, :, None, :]
        logits = score[:, None, None].masked_fill(~usable, float("-inf"))
        b, m = position.shape
        weights = logits.view(b, n_entities, n_entities, m * m).softmax(-1).nan_to_num(0.0)  # no mentions: zeros
        weights = weights.view(b, n_entities, n_entities, m, m).to(h.dtype)
        state_x = torch.einsum("bxyi,bid->bxyd", weights.sum(-1), mention)
        state_y = torch.einsum("bxyj,bjd->bxyd", weights.sum(-2), mention)
        return state_x, state_y
