"""A relation head that must take a *stated* relation from a kinship word of the story.

Why: a reader whose relation head sees whole-sentence states learns the words *around* a relation as well
as the relation word. If the crowd workers who wrote granddaughter stories liked "a lovely girl", then
"[Y], who is the sister of [X], is a lovely girl" reads as a granddaughter. CLUTRR's test stories are
written by other workers, so such cues mislead. In 90% of CLUTRR's gold edges, the sentence that names both
people holds a kinship word of the edge's kind or its inverse (training and test alike), so the relation
can come from the word itself, and the context only has to say *which* word and *whom it names*.

A pair's relation reaches the story in one of two ways, and the head reads each its own way:

* **by a word**: a kinship word says it ("[X]'s sister [Y]"). For the ordered pair (x, y), read at its closest
  mentions (as :class:`~laart_lab.models.story_reader.StoryReader` reads it), the candidates are the kinship
  words (:mod:`laart_lab.data.kinship_words`) in the sentence of either mention. A small network scores
  each candidate c from its contextual state, the states of the two mentions and its signed distance to
  each, and says whether c names y ("[X]'s sister [Y]": y is x's sister) or x ("[Y]'s brother [X]": y is
  x's *inverse* of brother, a sibling)::

      P_word(k) = sum_c P(c) * (P(c names y) [kind(c) = k] + P(c names x) [inverse(kind(c)) = k]) + P(other) / K

  with ``P(c), P(other)`` one softmax over the candidates' scores and a learned "other" logit, which
  spreads its share over every kind: it absorbs the facts no word in the window states (annotation noise,
  a word outside the lexicon) without letting context pick a kind;
* **free**: no one word near the pair says it: a relation the chain implies ("[A]'s brother [B] and son [C]":
  C's uncle is B), or one stated in several words ("his son's daughter [C]"). The free pair head's kind
  distribution ``P_free`` reads it, as it reads every pair without this head.

The free head's pair features also give three route logits, ``P(none), P(word), P(free)``, and
``P(kind) = P(word) P_word(kind) + P(free) P_free(kind)``. Training supervises the route: a labelled pair
goes by word when the gold graph states it (an edge or its inverse) and a word in its window can say its
label (the word's kind or its inverse), else free (:meth:`~laart_lab.models.laart.LaartModel.route_targets`,
loss ``route``). The free head is also trained on every labelled pair on its own (loss ``pair_free``), so a
pair routed to it is still read as the plain reader reads it. A pair whose window holds no kinship word
reads ``P_free`` on both routes.

It is an option (``LaartModel(relation_head="kinship_word")``), off in the recipes: on CLUTRR it reads edges
stated in new wording better than the free head alone, but validation's answers were worse (README, "A
relation head that reads the kinship word").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from laart_lab.data.clutrr_text import StoryBatch
from laart_lab.data.kinship_words import in_law_kinds, token_kinds, vocabulary_kinds
from laart_lab.models.token_positions import distance_bucket, states_at


@dataclass(frozen=True)
class KinshipLexicon:
    """The lexicon in the reader's ids: the kind id per word id, the in-law kind per kind, and "law"."""

    word_kind: list[int]  #: per word id: kind id, or -1
    in_law_kind: list[int]  #: per kind id: the in-law kind id, or -1
    law_id: int | None  #: word id of "law" (None: no in-law term can be read)

    @classmethod
    def build(cls, vocabulary: list[str], kinds: list[str]) -> KinshipLexicon:
        """``kinds`` in the reader's kind order (``StoryReader`` ``relation_factors``)."""
        law = vocabulary.index("law") if "law" in vocabulary else None
        return cls(vocabulary_kinds(vocabulary, kinds), in_law_kinds(kinds), law)


@dataclass
class WordReading:
    """What :class:`KinshipWordHead` read, shapes ``[B, E, E, ...]`` over ordered entity pairs."""

    log_probs: Tensor  #: [B, E, E, K + 1] kind log-probabilities (last: none)
    sayable: Tensor  #: bool [B, E, E, K] the kinds the words in each pair's window can say (the route target)
    evidence: Tensor  #: long [B, E, E] token position of the pair's most likely kinship word, -1: none in its window


class KinshipWordHead(nn.Module):
    """Turns the free pair head's logits into kind log-probabilities read from kinship words (module docstring).

    Args:
        d_model: the reader's state size. lexicon: :class:`KinshipLexicon` for the reader's vocabulary.
        inverse_kinds: the inverse of each kind id (x's parent y is y's child x).
        distance_buckets: buckets of a candidate's signed distance to each mention.
    """

    def __init__(
        self,
        d_model: int,
        lexicon: KinshipLexicon,
        inverse_kinds: list[int],
        distance_buckets: int,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if len(lexicon.in_law_kind) != len(inverse_kinds):
            raise ValueError(f"the lexicon has {len(lexicon.in_law_kind)} kinds, inverse_kinds {len(inverse_kinds)}")
        self.num_kinds, self.distance_buckets = len(inverse_kinds), distance_buckets
        self.law_id = lexicon.law_id
        self.word_kind: Tensor
        self.in_law_kind: Tensor
        self.inverse_kind: Tensor
        self.register_buffer("word_kind", torch.tensor(lexicon.word_kind, dtype=torch.long), persistent=False)
        self.register_buffer("in_law_kind", torch.tensor(lexicon.in_law_kind, dtype=torch.long), persistent=False)
        self.register_buffer("inverse_kind", torch.tensor(inverse_kinds, dtype=torch.long), persistent=False)
        hidden = d_model // 2  # the [B, E, E, C, hidden] tensor is the head's cost: kept small
        self.word = nn.Linear(d_model, hidden)
        self.mention_x = nn.Linear(d_model, hidden, bias=False)
        self.mention_y = nn.Linear(d_model, hidden, bias=False)
        self.to_x = nn.Embedding(2 * distance_buckets + 1, hidden)
        self.to_y = nn.Embedding(2 * distance_buckets + 1, hidden)
        self.out = nn.Sequential(nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 2))  # score, names y
        self.other = nn.Parameter(torch.tensor(-3.0))

    def forward(
        self,
        story: StoryBatch,
        tokens: Tensor,
        h: Tensor,
        pos_x: Tensor,
        pos_y: Tensor,
        free_logits: Tensor,
        route_logits: Tensor,
    ) -> WordReading:
        """``free_logits`` ``[B, E, E, K + 1]`` (last: none) and ``route_logits`` ``[B, E, E, 2]`` (word,
        free) -> :class:`WordReading`."""
        route = torch.cat([free_logits[..., -1:], route_logits], -1).float().softmax(-1)  # none, stated, implied
        p_free = free_logits[..., :-1].float().softmax(-1)  # [B, E, E, K]
        free = self._combine(route, p_free, p_free)
        kinds = token_kinds(tokens, self.word_kind, self.in_law_kind, self.law_id).masked_fill(~story.padding_mask, -1)
        is_word = kinds >= 0
        c = int(is_word.sum(1).max())
        if c == 0:
            nothing = torch.full(free.shape[:-1], -1, dtype=torch.long, device=free.device)
            return WordReading(free, torch.zeros_like(p_free, dtype=torch.bool), nothing)
        # the kinship words as a compact list per story: positions [B, C]
        position = torch.argsort((~is_word).to(torch.int8), dim=1, stable=True)[:, :c]
        valid = is_word.gather(1, position)
        kind = kinds.gather(1, position).clamp_min(0)
        sentence = story.sentence.gather(1, position)[:, None, None, :]  # [B, 1, 1, C]
        b = h.shape[0]
        sentence_x = story.sentence.gather(1, pos_x.reshape(b, -1)).view_as(pos_x).unsqueeze(-1)
        sentence_y = story.sentence.gather(1, pos_y.reshape(b, -1)).view_as(pos_y).unsqueeze(-1)
        window = valid[:, None, None, :] & ((sentence == sentence_x) | (sentence == sentence_y))  # [B, E, E, C]

        word_state, state_x, state_y = states_at(h, position), states_at(h, pos_x), states_at(h, pos_y)
        to_x = distance_bucket(position[:, None, None, :] - pos_x.unsqueeze(-1), self.distance_buckets)
        to_y = distance_bucket(position[:, None, None, :] - pos_y.unsqueeze(-1), self.distance_buckets)
        hidden = (
            self.word(word_state)[:, None, None]
            + self.mention_x(state_x).unsqueeze(-2)
            + self.mention_y(state_y).unsqueeze(-2)
            + self.to_x(to_x)
            + self.to_y(to_y)
        )  # [B, E, E, C, D]
        score, names_y = self.out(hidden).float().unbind(-1)

        shape = free_logits.shape[:-1]
        choice = torch.cat([self.other.float().expand(*shape, 1), score.masked_fill(~window, -1e9)], -1).softmax(-1)
        p_other, p_word = choice[..., 0], choice[..., 1:]
        said = F.one_hot(kind, self.num_kinds).float()  # [B, C, K]
        inverse = F.one_hot(self.inverse_kind[kind], self.num_kinds).float()
        names = torch.sigmoid(names_y)
        p_kind = (
            torch.einsum("bxyc,bck->bxyk", p_word * names, said)
            + torch.einsum("bxyc,bck->bxyk", p_word * (1.0 - names), inverse)
            + p_other.unsqueeze(-1) / self.num_kinds
        )
        sayable = torch.einsum("bxyc,bck->bxyk", window.float(), said + inverse) > 0
        has_word = window.any(-1)
        best = position.gather(1, p_word.argmax(-1).reshape(b, -1)).view_as(has_word)
        return WordReading(
            log_probs=torch.where(has_word.unsqueeze(-1), self._combine(route, p_kind, p_free), free),
            sayable=sayable,
            evidence=torch.where(has_word, best, -1),
        )

    @staticmethod
    def _combine(route: Tensor, p_word: Tensor, p_free: Tensor) -> Tensor:
        """``log [P(stated) P_word + P(implied) P_free, P(none)]``."""
        p_kind = route[..., 1:2] * p_word + route[..., 2:3] * p_free
        return torch.cat([p_kind, route[..., :1]], -1).clamp_min(1e-12).log()
