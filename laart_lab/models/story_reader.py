"""The "fast system" of LAART: a transformer that reads a story and states who is whose what.

:class:`StoryReader` is a plain ``nn.Module``: a bidirectional :class:`TransformerStack` built from any
attention plugin (and an optional memory plugin) reads the words of a :class:`StoryBatch`, with each
entity mention carrying its entity slot's embedding. Three heads read the result:

* **relation head**, over every ordered pair of entities ``(x, y)``: a distribution over the relation
  vocabulary plus ``none``, "y is x's <relation>". A pair is read where the story states it: at the
  closest pair of mentions of x and y, within one sentence when they share one (their contextual
  states, the signed token distance between them, whether they share a sentence), beside both
  entities' pooled states. With
  ``relation_factors`` (each relation a gender-free *kind* and the gender of y: sister = sibling +
  female) the head reads the kind of the pair and takes y's gender from the gender head, which hears
  every mention of y ("her", "his"); the relation's probability is the product of the two, and the
  kind is read from both directions at once (``inverse_kinds``: x's parent y is y's child x). With
  ``mention_choice="learned"``, a pair that no sentence names together ("[C] loves movies with his daughter. Her name
  is [G].") is read at mention states weighted by a learned choice of mention pair
  (:mod:`~laart_lab.models.mention_choice`) instead of at its closest mentions. With
  ``pair_context`` the head also reads a context vector pooled *for the pair* (localized context pooling,
  as ATLOP does for document-level relation extraction): each of x's and y's closest mentions attends over
  the story's tokens, per head; the product of the two attentions, renormalised, weighs the token states,
  so the words both mentions look at ("his sister" between [Michael] and [Dorothy]) outweigh a kinship word
  that belongs to another pair of the sentence ("her father [Michael]"; measured in the README: it did not read
  new wording better, so no recipe uses it);
* **gender head**, per entity (female / male), from all its mentions: from their mean state
  (``gender_evidence="pooled"``), or each mention read on its own and the log-odds summed
  (``"mentions"``: every mention is a separate piece of evidence, so one clear "his sister [Y]" is not
  averaged away by mentions that say nothing about y), or the mentions' log-odds plus what the pair head
  reads of y's gender at each pair (x, y) whose closest mentions share a sentence (``"pairs"``, meant for a
  gendered word that belongs to the other person, "[A] and his wife [B] baked a cake for [C], his daughter";
  measured in the README: it did not read genders better, so no recipe uses it);
  At evaluation, ``name_gender_weight`` times each person's first-name log-odds (``StoryBatch.name_gender``, from a
  name list: :mod:`laart_lab.data.name_gender`) is added to the gender head's: the reader sees people as renamed
  slots, so their names' genders reach it only this way ("[Jason]'s grandson [Scott]": Jason is a grandfather).
  With ``name_gender_input`` the transformer also reads them: each mention carries its person's name log-odds;
* **answer head** (the fast answer): the query's two entities and the pooled story, over the vocabulary;
* **stated head** (optional, ``stated_head``), over every pair: does the story *state* this pair's relation
  (a fact of its chain), rather than only imply it ("[A]'s brother [B] and son [C]" states A-B and A-C and
  implies B-C) or not relate the two at all; read from both directions at once. LAART's chain search can
  walk stated facts, the steps the reasoner was trained to compose, instead of shortcuts through implied pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from laart_lab.components.attention import AttentionFactory
from laart_lab.components.memory import MemoryFactory
from laart_lab.data.clutrr_text import StoryBatch
from laart_lab.models.kinship_word_head import KinshipLexicon, KinshipWordHead
from laart_lab.models.mention_choice import LearnedMentionChoice
from laart_lab.models.token_positions import distance_bucket, states_at
from laart_lab.models.transformer import TransformerStack

GenderEvidence = Literal["pooled", "mentions", "pairs"]
MentionChoice = Literal["closest", "learned"]
_FAR = 10**6  # distance of a pair of mentions that cannot be used (padding, or not the two entities)
_SENTENCE_APART = 10**4  # added to the distance of two mentions in different sentences


@dataclass
class ReaderOutput:
    """Shapes: B batch, E entities, R relations."""

    pair_logits: Tensor  #: [B, E, E, R + 1] "y is x's <relation>" for entity pair (x, y); last class: none
    gender_logits: Tensor  #: [B, E, 2] female, male
    fast_logits: Tensor  #: [B, R] the fast system's answer to the query
    # the kinship_word head only (laart_lab.models.kinship_word_head):
    route_logits: Tensor | None = None  #: [B, E, E, 2] read by a word / by the free head
    free_pair_logits: Tensor | None = None  #: [B, E, E, R + 1] the free pair head alone
    sayable_kinds: Tensor | None = None  #: bool [B, E, E, kinds] what the words near each pair can say
    evidence_token: Tensor | None = None  #: long [B, E, E] position of the kinship word a pair is read from, -1: none
    stated_logits: Tensor | None = None  #: [B, E, E] the stated head only: log-odds that the story states the pair


class StoryReader(nn.Module):
    """Reads stories into relation, gender and answer logits (see the module docstring).

    Args:
        vocab_size: words (from the data's vocabulary); num_relations: the relation vocabulary size.
        max_entities: entity slots (embeddings); attention: backend factory, called once per layer.
        d_model, n_layers, n_heads, dropout, position: the bidirectional transformer.
        memory, memory_layer: optional memory module factory ``(d_model, n_heads)`` and its block.
        distance_buckets: buckets of the signed mention distance (each side).
        relation_factors: optional ``(kind, gender)`` ids per relation (gender 0 female, 1 male); the
            relation head then predicts ``max(kind) + 1`` kinds plus none (see the module docstring).
        inverse_kinds: optional, with ``relation_factors``: the inverse of each kind (parent <-> child).
            A story that says "y is x's parent" also says "x is y's child", so the kind of ``(x, y)`` is
            read from both directions: ``P(kind) ∝ P_xy(kind) * P_yx(inverse kind)``.
        gender_evidence: how the gender head reads an entity's mentions (module docstring).
        kinship_lexicon: with ``relation_factors`` and ``inverse_kinds``: the relation head must take a
            pair's kind from a kinship word near its mentions
            (:class:`~laart_lab.models.kinship_word_head.KinshipWordHead`); None: the free pair head alone.
        stated_head: also read whether the story states each pair (module docstring).
        pair_context: the pair head also reads the pair's pooled context (module docstring).
        name_gender_input: every mention also carries its person's first-name gender log-odds into the transformer
            (a learned direction times the log-odds / 4; module docstring), in training and at evaluation alike.
        name_gender_weight: at evaluation, the weight of each person's first-name gender log-odds added to the
            gender head's (module docstring); 0: off. Training never adds them. An attribute: set it on a trained
            reader to read it again with another weight.
        mention_choice: where a pair that no sentence names together is read: at its closest mentions
            (``"closest"``), or at mention states weighted by a learned choice of the mention pair
            (``"learned"``, :mod:`~laart_lab.models.mention_choice`). Pairs within a sentence are read at their
            closest mentions either way.
    """

    def __init__(
        self,
        vocab_size: int,
        num_relations: int,
        max_entities: int,
        attention: AttentionFactory,
        d_model: int = 128,
        n_layers: int = 3,
        n_heads: int = 4,
        dropout: float = 0.1,
        memory: MemoryFactory | None = None,
        memory_layer: int = -1,
        distance_buckets: int = 16,
        relation_factors: list[tuple[int, int]] | None = None,
        inverse_kinds: list[int] | None = None,
        gender_evidence: GenderEvidence = "pooled",
        kinship_lexicon: KinshipLexicon | None = None,
        stated_head: bool = False,
        pair_context: bool = False,
        name_gender_input: bool = False,
        name_gender_weight: float = 0.0,
        mention_choice: MentionChoice = "closest",
    ) -> None:
        super().__init__()
        if mention_choice not in get_args(MentionChoice):
            raise ValueError(f"mention_choice must be one of {get_args(MentionChoice)}, got {mention_choice!r}")
        self.mention_choice = LearnedMentionChoice(d_model) if mention_choice == "learned" else None
        self.name_gender_weight = name_gender_weight
        self.name_gender_input = nn.Linear(1, d_model, bias=False) if name_gender_input else None
        if gender_evidence not in get_args(GenderEvidence):
            raise ValueError(f"gender_evidence must be one of {get_args(GenderEvidence)}, got {gender_evidence!r}")
        self.gender_evidence = gender_evidence
        if relation_factors is not None and len(relation_factors) != num_relations:
            raise ValueError(f"relation_factors has {len(relation_factors)} entries for {num_relations} relations")
        self.relation_kind: Tensor | None
        self.relation_gender: Tensor | None
        if relation_factors is None:
            self.relation_kind = self.relation_gender = None
            pair_classes = num_relations + 1
        else:
            self.register_buffer("relation_kind", torch.tensor([k for k, _ in relation_factors]), persistent=False)
            self.register_buffer("relation_gender", torch.tensor([g for _, g in relation_factors]), persistent=False)
            pair_classes = max(k for k, _ in relation_factors) + 2
        self.inverse_kind: Tensor | None
        if inverse_kinds is not None and (relation_factors is None or len(inverse_kinds) != pair_classes - 1):
            raise ValueError("inverse_kinds needs relation_factors and one inverse per kind")
        inverse = None if inverse_kinds is None else torch.tensor([*inverse_kinds, pair_classes - 1])
        self.register_buffer("inverse_kind", inverse, persistent=False)
        self.num_relations, self.max_entities, self.distance_buckets = num_relations, max_entities, distance_buckets
        self.word = nn.Embedding(vocab_size, d_model, padding_idx=0)
        self.slot = nn.Embedding(max_entities, d_model)
        self.encoder = TransformerStack(
            d_model,
            n_layers,
            n_heads,
            attention,
            causal=False,
            dropout=dropout,
            memory=memory,
            memory_layer=memory_layer,
        )
        self.distance = nn.Embedding(2 * distance_buckets + 1, d_model)
        self.same_sentence = nn.Embedding(2, d_model)
        hidden = 2 * d_model
        self.pair_context: PairContext | None = PairContext(d_model, n_heads) if pair_context else None
        features = (6 if pair_context else 5) * d_model
        routes = 0 if kinship_lexicon is None else 2  # the kinship-word head's route: stated by a word, or implied
        self.stated_head = stated_head
        self.pair_gender = gender_evidence == "pairs"
        # the pair head's last outputs: routes, then stated, then y's gender (female, male) as the pair says it
        extra = routes + int(stated_head) + 2 * int(self.pair_gender)
        self.pair_head = nn.Sequential(
            nn.Linear(features, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, pair_classes + extra)
        )
        self.gender_head = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, 2))
        self.fast_head = nn.Sequential(
            nn.Linear(4 * d_model, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_relations)
        )
        self.kinship_word_head: KinshipWordHead | None = None
        if kinship_lexicon is not None:
            if inverse_kinds is None:
                raise ValueError("kinship_lexicon needs relation_factors and inverse_kinds (kinds to read words as)")
            self.kinship_word_head = KinshipWordHead(
                d_model, kinship_lexicon, list(inverse_kinds), distance_buckets, dropout
            )
        nn.init.normal_(self.word.weight, std=0.02)
        nn.init.normal_(self.slot.weight, std=0.02)

    def forward(self, story: StoryBatch, word_dropout: float = 0.0) -> ReaderOutput:
        tokens = story.tokens
        if word_dropout > 0 and self.training:  # unseen paraphrases: learn to read around unknown words
            drop = (torch.rand(tokens.shape, device=tokens.device) < word_dropout) & (story.token_entity < 0)
            tokens = torch.where(drop & story.padding_mask, torch.ones_like(tokens), tokens)
        is_mention = story.token_entity >= 0
        entity = story.token_entity.clamp_min(0)
        slots = story.entity_slot.gather(1, entity)  # [B, T]
        h = self.word(tokens) + torch.where(is_mention.unsqueeze(-1), self.slot(slots), 0.0)
        if self.name_gender_input is not None:  # who is a woman or a man, by name, for "his" / "her" to refer to
            odds = self._name_odds(story).gather(1, entity) * is_mention  # [B, T]
            h = h + self.name_gender_input(odds.unsqueeze(-1) / 4.0)
        h = self.encoder(h, key_padding_mask=story.padding_mask)  # [B, T, D]

        n_entities = story.entity_slot.shape[1]
        mentions = F.one_hot(entity, n_entities).to(h.dtype) * is_mention.unsqueeze(-1)  # [B, T, E]
        counts = mentions.sum(1).clamp_min(1.0)  # [B, E]
        pooled = torch.einsum("bte,btd->bed", mentions, h) / counts.unsqueeze(-1)  # [B, E, D]

        if self.gender_evidence in ("mentions", "pairs"):  # log-odds of independent mentions add up
            gender_logits = torch.einsum("bte,btc->bec", mentions, self.gender_head(h).float())
        else:
            gender_logits = self.gender_head(pooled)
        mentions = self._mention_list(story)
        pos_x, pos_y = self._closest_mentions(story, pooled.shape[1], mentions)
        same = self._same_sentence(story, pos_x, pos_y)
        state_x, state_y = states_at(h, pos_x), states_at(h, pos_y)
        if self.mention_choice is not None:  # a pair no sentence names together: its mentions weighed, learned
            soft_x, soft_y = self.mention_choice(h, *mentions, pooled.shape[1])
            apart = ~same.unsqueeze(-1)
            state_x, state_y = torch.where(apart, soft_x, state_x), torch.where(apart, soft_y, state_y)
        features = self._pair_features(pooled, state_x, state_y, pos_x, pos_y, same)
        if self.pair_context is not None:
            features = torch.cat([features, self.pair_context(h, story.padding_mask, pos_x, pos_y)], -1)
        pair_logits = self.pair_head(features)
        if self.pair_gender:  # each pair read in one sentence is one more piece of evidence on y's gender
            real = story.entity_mask.unsqueeze(2) & story.entity_mask.unsqueeze(1)  # both people exist
            said = same & real
            said = said & ~torch.eye(said.shape[1], dtype=torch.bool, device=said.device)
            gender_logits = gender_logits + (pair_logits[..., -2:].float() * said.unsqueeze(-1)).sum(1)
            pair_logits = pair_logits[..., :-2]
        if self.name_gender_weight and not self.training:
            gender_logits = gender_logits + self._name_evidence(story)
        route_logits = free_pair_logits = sayable = evidence = stated_logits = None
        if self.stated_head:  # one fact, said from either side: both directions' log-odds together
            stated_logits = (pair_logits[..., -1] + pair_logits[..., -1].transpose(1, 2)).float() / 2
            pair_logits = pair_logits[..., :-1]
        if self.kinship_word_head is not None:
            pair_logits, route_logits = pair_logits[..., :-2], pair_logits[..., -2:]
            # the free head also reads every pair on its own (its own loss): a pair routed to it is read well
            free_pair_logits = self._factorised(pair_logits, gender_logits)
            words = self.kinship_word_head(story, tokens, h, pos_x, pos_y, pair_logits, route_logits)
            pair_logits, sayable, evidence = words.log_probs, words.sayable, words.evidence
        if self.relation_kind is not None and self.relation_gender is not None:
            pair_logits = self._factorised(pair_logits, gender_logits)
        rows = torch.arange(h.shape[0], device=h.device)
        head, tail = pooled[rows, story.query[:, 0]], pooled[rows, story.query[:, 1]]
        mask = story.padding_mask.unsqueeze(-1).to(h.dtype)
        context = (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        fast_logits = self.fast_head(torch.cat([head, tail, head * tail, context], -1))
        return ReaderOutput(
            pair_logits=pair_logits,
            gender_logits=gender_logits,
            fast_logits=fast_logits,
            route_logits=route_logits,
            free_pair_logits=free_pair_logits,
            sayable_kinds=sayable,
            evidence_token=evidence,
            stated_logits=stated_logits,
        )

    def _name_evidence(self, story: StoryBatch) -> Tensor:
        """``[B, E, 2]`` log-odds to add to the gender head's (female, male): half the weighted name log-odds each."""
        half = 0.5 * self.name_gender_weight * self._name_odds(story)
        return torch.stack([half, -half], -1)

    @staticmethod
    def _name_odds(story: StoryBatch) -> Tensor:
        """``[B, E]`` first-name gender log-odds of the batch, or the error that names the data option to set."""
        if story.name_gender is None:
            raise ValueError(
                "name_gender_weight and name_gender_input read each person's first-name gender, but the batch has "
                "none: build the data with name evidence (data.init_args.name_genders: census, or a "
                "name,female,male CSV file), or turn them off in model.init_args"
            )
        return story.name_gender.float()

    def _factorised(self, kind_logits: Tensor, gender_logits: Tensor) -> Tensor:
        """``log P(kind(r) | x, y) + log P(gender(y) = gender(r))`` per relation r, and ``log P(none)``."""
        assert self.relation_kind is not None and self.relation_gender is not None
        kind = kind_logits.float().log_softmax(-1)  # [B, E, E, kinds + 1]
        if self.inverse_kind is not None:  # both directions state one fact
            kind = (kind + kind.transpose(1, 2)[..., self.inverse_kind]).log_softmax(-1)
        gender = gender_logits.float().log_softmax(-1)  # [B, E, 2]
        of_y = gender.unsqueeze(1).expand(-1, kind.shape[1], -1, -1)  # [B, x, y, 2]
        relations = kind[..., self.relation_kind] + of_y[..., self.relation_gender]
        return torch.cat([relations, kind[..., -1:]], -1)

    def _closest_mentions(
        self, story: StoryBatch, n_entities: int, mentions: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Token positions ``[B, E, E]`` of the closest mentions of x and of y, for every entity pair (x, y):
        closest in tokens, but a pair of mentions in one sentence before any pair across sentences. ``mentions``:
        the story's :meth:`_mention_list`, when the caller has it already."""
        b = story.tokens.shape[0]
        position, owner = self._mention_list(story) if mentions is None else mentions
        m = position.shape[1]
        distance = position.unsqueeze(2) - position.unsqueeze(1)  # [B, M, M]: i - j
        of_x = owner.unsqueeze(-1) == torch.arange(n_entities, device=position.device)  # [B, M, E]
        usable = of_x.unsqueeze(2).unsqueeze(4) & of_x.unsqueeze(1).unsqueeze(3)  # [B, Mi, Mj, Ex, Ey]
        sentence = story.sentence.gather(1, position)
        apart = distance.abs() + _SENTENCE_APART * (sentence.unsqueeze(2) != sentence.unsqueeze(1))
        cost = torch.where(usable, apart.unsqueeze(-1).unsqueeze(-1), _FAR)
        cost = cost.permute(0, 3, 4, 1, 2).reshape(b, n_entities, n_entities, m * m)
        best = cost.argmin(-1)  # [B, E, E] flat index i * M + j
        i, j = best // m, best % m
        pos_x, pos_y = position.gather(1, i.view(b, -1)), position.gather(1, j.view(b, -1))  # [B, E*E]
        return pos_x.view(b, n_entities, n_entities), pos_y.view(b, n_entities, n_entities)

    @staticmethod
    def _mention_list(story: StoryBatch) -> tuple[Tensor, Tensor]:
        """The mentions as a compact list per example: token positions ``[B, M]`` and the entity each names, -1 for
        padding (at position 0)."""
        is_mention = story.token_entity >= 0
        order = torch.argsort((~is_mention).to(torch.int8), dim=1, stable=True)
        m = int(is_mention.sum(1).max().clamp_min(1))
        position = order[:, :m]
        valid = is_mention.gather(1, position)
        return position, torch.where(valid, story.token_entity.gather(1, position), -1)

    @staticmethod
    def _same_sentence(story: StoryBatch, pos_x: Tensor, pos_y: Tensor) -> Tensor:
        """bool ``[B, E, E]``: the closest mentions of x and of y are in one sentence."""
        b = pos_x.shape[0]
        flat_x, flat_y = pos_x.reshape(b, -1), pos_y.reshape(b, -1)
        return (story.sentence.gather(1, flat_x) == story.sentence.gather(1, flat_y)).view_as(pos_x)

    def _pair_features(
        self, pooled: Tensor, state_x: Tensor, state_y: Tensor, pos_x: Tensor, pos_y: Tensor, same: Tensor
    ) -> Tensor:
        """``[B, E, E, 5D]``: the states x and y are read at (their closest mentions, or the learned choice), the
        signed distance of the closest mentions and whether they share a sentence (``same``), both entities."""
        n_entities = pooled.shape[1]
        signed = pos_y - pos_x
        relative = self.distance(distance_bucket(signed, self.distance_buckets)) + self.same_sentence(same.long())
        ex = pooled.unsqueeze(2).expand(-1, -1, n_entities, -1)
        ey = pooled.unsqueeze(1).expand(-1, n_entities, -1, -1)
        return torch.cat([state_x, state_y, relative, ex, ey], -1)


class PairContext(nn.Module):
    """Localized context pooling for entity pairs (Zhou et al., ATLOP, 2021), with learned attention.

    For each pair ``(x, y)``, per head, the closest mention of x and that of y each attend over the tokens
    (``softmax(q·k / sqrt(d))`` over the unpadded ones); the product of the two attentions, averaged over heads
    and renormalised, is where both look. The pair's context is the token states weighted by it, ``[B, E, E, D]``.
    """

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"pair_context needs d_model ({d_model}) to be a multiple of n_heads ({n_heads})")
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)

    def forward(self, h: Tensor, padding_mask: Tensor, pos_x: Tensor, pos_y: Tensor) -> Tensor:
        b, t, _ = h.shape
        q = self.query(h).view(b, t, self.n_heads, self.head_dim)
        k = self.key(h).view(b, t, self.n_heads, self.head_dim)
        scores = torch.einsum("bqhd,bkhd->bqhk", q, k).float() / self.head_dim**0.5  # every token's attention
        attention = scores.masked_fill(~padding_mask.view(b, 1, 1, t), float("-inf")).softmax(-1)  # [B, T, H, T]
        rows = torch.arange(b, device=h.device).unsqueeze(1)
        at_x = attention[rows, pos_x.reshape(b, -1)]  # [B, E*E, H, T]: the rows of x's closest mentions
        at_y = attention[rows, pos_y.reshape(b, -1)]
        both = (at_x * at_y).mean(2)
        weights = both / both.sum(-1, keepdim=True).clamp_min(1e-12)  # [B, E*E, T]
        return torch.bmm(weights.to(h.dtype), h).view(*pos_x.shape, -1)
