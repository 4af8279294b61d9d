"""The text side of CLUTRR: stories as word ids with entity mentions, for models that *read*.

A CLUTRR story names its people in brackets (``[Dorothy]'s brother [Michael] ...``). This module turns
a :class:`~laart_lab.data.clutrr.ClutrrExample` into what a reader sees, and nothing more:

* **words**: a word-level vocabulary built from the training stories (lower-cased; words seen fewer
  than ``min_count`` times, and every word of a test story that training never showed, become
  ``<unk>``); each bracketed name becomes one ``<ent>`` token;
* **entities**: the distinct names in order of first mention are the story's entities ``0 .. E-1``;
  each gets an entity *slot* (the embedding it is read with). Training draws the slots at random per
  example so that no name, and no position in the story, is memorised; evaluation uses slot = entity;
* **sentences**: each token's sentence index (split at ``. ! ?``), and padding masks;
* **the query**: the entities of the two names in the query text.

What the model may see is a :class:`StoryBatch`. Gold relations supervise training only: they travel in
a :class:`ReaderSupervision` attached to *training* batches, and :class:`TextCollator` built for
evaluation attaches none (:class:`LaartBatch` ``supervision`` is None), so the model cannot read the
gold graph at validation or test. The edge metrics get their gold edges from the data module
(:meth:`~laart_lab.data.clutrr.ClutrrDataModule.gold_edges`), outside the batch.

Reader labels (training only) for an ordered pair of entities ``(x, y)``, "y is x's <relation>":

* a gold chain edge, or the inverse of one (by the gender of x): that relation;
* a pair mentioned in one sentence: the relation that the gold chain implies through the kinship
  algebra (:mod:`laart_lab.data.kinship_algebra`), else *ignored* (often truly related, never "none");
* any other pair: ``none`` (the story does not state it); pairs with a noise (untyped) edge: ignored.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor

from laart_lab.data.kinship_algebra import compose, inverse_relation
from laart_lab.data.name_gender import NameGenderLexicon

PAD, UNK, ENTITY = "<pad>", "<unk>", "<ent>"
SPECIAL_TOKENS = (PAD, UNK, ENTITY)
PAD_ID, UNK_ID, ENTITY_ID = 0, 1, 2
IGNORE = -100  #: label of a pair (or a gender) that carries no supervision
_TOKEN = re.compile(r"\[[^\]]+\]|'s\b|[a-z]+|\d+|[^\sa-z\d]")
_SENTENCE_END = {".", "!", "?"}
_MENTION = re.compile(r"\[([^\]]+)\]")
_QUERY_NAME = re.compile(r"['\"]([^'\"]+)['\"]")
GENDER_NAMES = {1: "female", 2: "male"}  #: gender id (as ClutrrExample.genders) -> name


def tokenize(story: str) -> list[str]:
    """Lower-cased word tokens; a bracketed name stays one token ``[name]``."""
    return _TOKEN.findall(story.lower())


class WordTokenizer:
    """Word vocabulary: ``<pad>``, ``<unk>``, ``<ent>``, then words by frequency (ties alphabetical)."""

    def __init__(self, words: Sequence[str]) -> None:
        if list(words[: len(SPECIAL_TOKENS)]) != list(SPECIAL_TOKENS):
            raise ValueError(f"a vocabulary starts with {list(SPECIAL_TOKENS)}, got {list(words[:3])}")
        self.words = list(words)
        self.index = {word: i for i, word in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("the vocabulary has repeated words")

    @classmethod
    def build(cls, stories: Iterable[str], min_count: int = 2) -> WordTokenizer:
        counts = Counter(t for story in stories for t in tokenize(story) if not t.startswith("["))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls([*SPECIAL_TOKENS, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, story: str) -> tuple[list[int], list[str | None]]:
        """Word ids, and per token the mentioned name (lower-cased, brackets removed) or None."""
        ids: list[int] = []
        names: list[str | None] = []
        for token in tokenize(story):
            if token.startswith("["):
                ids.append(ENTITY_ID)
                names.append(token[1:-1].strip())
            else:
                ids.append(self.index.get(token, UNK_ID))
                names.append(None)
        return ids, names


@dataclass
class EncodedStory:
    """One story as the reader sees it, plus the gold facts in entity space (training labels only)."""

    tokens: list[int]
    token_entity: list[int]  #: per token: the entity it mentions, or -1
    sentence: list[int]  #: per token: sentence index
    entity_names: list[str]  #: entity -> name as written (first-mention order)
    query: tuple[int, int]  #: entities of the query's head and tail
    node_of_entity: list[int | None]  #: entity -> node of the gold graph (None: not a node)


def _query_names(example: Any) -> tuple[str, str]:
    names = _QUERY_NAME.findall(example.query_text or "")
    if len(names) == 2:
        return names[0].strip().lower(), names[1].strip().lower()
    if example.names:  # a query column that is not "('head', 'tail')": name the nodes of query_edge
        return example.names[example.query[0]].lower(), example.names[example.query[1]].lower()
    raise ValueError(f"example {example.id}: cannot read the two query names from {example.query_text!r}")


def encode_story(example: Any, tokenizer: WordTokenizer) -> EncodedStory:
    """Encode a :class:`~laart_lab.data.clutrr.ClutrrExample`'s story and query (text only)."""
    ids, mentions = tokenizer.encode(example.story)
    entity_of: dict[str, int] = {}
    token_entity, sentence = [], []
    current = 0
    for token_id, name in zip(ids, mentions):
        if name is not None:
            token_entity.append(entity_of.setdefault(name, len(entity_of)))
        else:
            token_entity.append(-1)
        sentence.append(current)
        if token_id != ENTITY_ID and tokenizer.words[token_id] in _SENTENCE_END:
            current += 1
    head, tail = _query_names(example)
    for name in (head, tail):
        if name not in entity_of:
            raise ValueError(
                f"example {example.id}: the query names {name!r}, who is not mentioned in the story "
                f"(mentioned: {sorted(entity_of)})"
            )
    node_by_name = {name.lower(): node for node, name in enumerate(example.names)}
    entity_names = list(entity_of)
    return EncodedStory(
        tokens=ids,
        token_entity=token_entity,
        sentence=sentence,
        entity_names=entity_names,
        query=(entity_of[head], entity_of[tail]),
        node_of_entity=[node_by_name.get(name) for name in entity_names],
    )


def gold_entity_edges(example: Any, encoded: EncodedStory) -> list[tuple[int, int, str]]:
    """The gold chain edges ``(entity a, entity b, relation)`` (edges whose people are both mentioned)."""
    entity_of_node = {node: e for e, node in enumerate(encoded.node_of_entity) if node is not None}
    return [
        (entity_of_node[a], entity_of_node[b], r)
        for a, b, r in example.edges
        if a in entity_of_node and b in entity_of_node
    ]


def _chain_facts(example: Any) -> tuple[dict[tuple[int, int], str], set[tuple[int, int]]]:
    """Node pairs -> relation: the gold edges, their inverses and their closure through the algebra; and
    the pairs the gold graph *states* (an edge or its inverse), as opposed to those it only implies."""
    gender_of_node = {i: GENDER_NAMES.get(g) for i, g in enumerate(example.genders)}
    known: dict[tuple[int, int], str] = {}
    for a, b, r in example.edges:
        known.setdefault((a, b), r)
    for a, b, r in example.edges:
        inverse = inverse_relation(r, gender_of_node.get(a))
        if inverse is not None:
            known.setdefault((b, a), inverse)
    stated = set(known)
    changed = True
    while changed:  # closure through the algebra (tiny graphs: a few passes)
        changed = False
        for (a, z), r1 in list(known.items()):
            for (z2, y), r2 in list(known.items()):
                if z2 == z and y != a and (a, y) not in known and (result := compose(r1, r2)) is not None:
                    known[(a, y)] = result
                    changed = True
    return known, stated


def pair_labels(example: Any, encoded: EncodedStory, relation_index: dict[str, int]) -> list[list[int]]:
    """Reader labels ``[E][E]`` (see the module docstring): relation id, ``len(relation_index)`` for
    "none", or :data:`IGNORE`."""
    return pair_supervision(example, encoded, relation_index)[0]


def pair_supervision(
    example: Any, encoded: EncodedStory, relation_index: dict[str, int]
) -> tuple[list[list[int]], list[list[bool]]]:
    """:func:`pair_labels`, and ``[E][E]`` True where the gold graph *states* the pair's relation (a gold edge
    or its inverse), False where it only implies it or says nothing ("[A]'s brother [B] and son [C]": C's
    uncle B is implied). One closure of the gold facts serves both."""
    none = len(relation_index)
    n_entities = len(encoded.entity_names)
    known, stated = _chain_facts(example)
    noisy = {(a, b) for a, b in getattr(example, "untyped_edges", [])}
    noisy |= {(b, a) for a, b in noisy}
    sentences_of: list[set[int]] = [set() for _ in range(n_entities)]
    for entity, sent in zip(encoded.token_entity, encoded.sentence):
        if entity >= 0:
            sentences_of[entity].add(sent)
    labels = [[IGNORE] * n_entities for _ in range(n_entities)]
    for x in range(n_entities):
        for y in range(n_entities):
            nx, ny = encoded.node_of_entity[x], encoded.node_of_entity[y]
            if x == y or nx is None or ny is None or (nx, ny) in noisy:
                continue
            relation = known.get((nx, ny))
            if (nx, ny) in stated:
                labels[x][y] = relation_index.get(relation, IGNORE)  # type: ignore[arg-type]
            elif sentences_of[x] & sentences_of[y]:
                labels[x][y] = relation_index.get(relation, IGNORE) if relation is not None else IGNORE
            else:
                labels[x][y] = none
    nodes = encoded.node_of_entity
    return labels, [[(nx, ny) in stated for ny in nodes] for nx in nodes]


_SENTENCE = re.compile(r"[^.!?]*[.!?]+|[^.!?]+$")


def story_sentences(story: str) -> list[str]:
    """The story's sentences as written (stripped; a last sentence may lack its full stop)."""
    return [sentence for _, sentence in sentence_spans(story)]


def sentence_spans(story: str) -> list[tuple[int, str]]:
    """:func:`story_sentences` with where each starts in ``story`` (``story[start:].startswith(sentence)``)."""
    spans = []
    for m in _SENTENCE.finditer(story):
        sentence = m.group().strip()
        if sentence:
            spans.append((m.start() + m.group().index(sentence), sentence))
    return spans


def ended_sentences(story: str) -> list[str]:
    """:func:`story_sentences`, each ending in ``.``, ``!`` or ``?`` (a CLUTRR sentence may lack its full stop:
    it gets " ."), so that sentences of several stories can be joined without running into each other."""
    return [sentence if sentence[-1] in ".!?" else sentence + " ." for sentence in story_sentences(story)]


def people_named(text: str) -> set[str]:
    """The people a text names: its bracketed mentions, stripped and lower-cased (as entity names are compared)."""
    return {name.strip().lower() for name in _MENTION.findall(text)}


def renamed_mentions(story: str, new_name: Callable[[str], str]) -> str:
    """``story`` with each bracketed name ``[n]`` written ``[new_name(n)]`` (``n`` as written, not stripped)."""
    return _MENTION.sub(lambda m: f"[{new_name(m.group(1))}]", story)


#: a sentence that starts with one of these refers back to the sentence before it ("Her name is [Guillermina].")
_REFERS_BACK = frozenset({"he", "she", "his", "her", "him", "they", "their", "them", "both"})
_FIRST_WORD = re.compile(r"[a-z]+")


def story_passages(example: Any) -> list[str]:
    """The story's ended sentences (:func:`ended_sentences`) grouped into passages that text from elsewhere may be
    put between without cutting what a sentence refers to. A sentence stays with the one before it when it names
    nobody ("They threw a ball around."), starts with a pronoun ("Her name is [Guillermina]."), or ends a fact the
    story states across sentences: a gold edge whose two people no sentence names together keeps every sentence from
    a sentence of one to the closest sentence of the other in one passage ("[Christopher] loves movies with his
    daughter. Her name is [Guillermina].")."""
    sentences = ended_sentences(example.story)
    named = [people_named(sentence) for sentence in sentences]
    joined = [False] * len(sentences)  # joined[i]: sentence i stays with sentence i - 1
    for i in range(1, len(sentences)):
        first = _FIRST_WORD.search(sentences[i].lower())
        joined[i] = not named[i] or (first is not None and first.start() < 2 and first.group() in _REFERS_BACK)
    people = [name.strip().lower() for name in example.names]
    for a, b, _ in example.edges:
        in_a = [i for i, names in enumerate(named) if people[a] in names]
        in_b = [i for i, names in enumerate(named) if people[b] in names]
        if not in_a or not in_b or set(in_a) & set(in_b):
            continue
        closest = min(abs(i - j) for i in in_a for j in in_b)
        for i, j in ((i, j) for i in in_a for j in in_b if abs(i - j) == closest):  # which pair states it: any
            for k in range(min(i, j) + 1, max(i, j) + 1):
                joined[k] = True
    passages: list[str] = []
    for sentence, stays in zip(sentences, joined):
        if stays and passages:
            passages[-1] = f"{passages[-1]} {sentence}"
        else:
            passages.append(sentence)
    return passages


def mixed_story(first: Any, second: Any, seed: int, passages: bool = False) -> Any:
    """``first`` with ``second``'s sentences interleaved (each story keeps its own order), ``second``'s
    people renamed apart; gold facts of both, query and answer of ``first`` (training augmentation).
    ``passages``: interleave :func:`story_passages` instead of sentences, so that no fact stated across sentences
    and no pronoun that refers to the sentence before is cut from what it needs."""
    import random

    rename = {name: f"{name} {seed % 997}x{j}" for j, name in enumerate(second.names)}

    def renamed(text: str) -> str:
        return renamed_mentions(text, lambda name: rename.get(name.strip(), name + " x"))

    # ended sentences, so that no sentence spans both stories
    if passages:
        parts1, parts2 = story_passages(first), [renamed(part) for part in story_passages(second)]
    else:
        parts1, parts2 = ended_sentences(first.story), ended_sentences(renamed(second.story))
    order = [0] * len(parts1) + [1] * len(parts2)
    random.Random(seed).shuffle(order)
    sources = (iter(parts1), iter(parts2))
    merged = [next(sources[o]) for o in order]
    shift = len(first.names)
    return replace(
        first,
        story=" ".join(merged),
        names=[*first.names, *(rename[n] for n in second.names)],
        genders=[*first.genders, *second.genders],
        edges=[*first.edges, *((a + shift, b + shift, r) for a, b, r in second.edges)],
        **(
            {"untyped_edges": [*first.untyped_edges, *((a + shift, b + shift) for a, b in second.untyped_edges)]}
            if hasattr(first, "untyped_edges")
            else {}
        ),
    )


# ------------------------------------------------------------------------------------------------
# batches
# ------------------------------------------------------------------------------------------------
def _move(obj: Any, device: torch.device | str) -> Any:
    """A copy of a dataclass of tensors with every tensor field on ``device``."""
    moved = {f.name: getattr(obj, f.name) for f in fields(obj)}
    return type(obj)(**{k: v.to(device) if isinstance(v, Tensor) else v for k, v in moved.items()})


@dataclass
class StoryBatch:
    """What the reader reads: text only. Shapes: B batch, T tokens, E entities (per batch maximum)."""

    tokens: Tensor  #: long [B, T] word ids (0 = padding)
    token_entity: Tensor  #: long [B, T] the entity a token mentions, -1 elsewhere
    sentence: Tensor  #: long [B, T] sentence index of each token
    padding_mask: Tensor  #: bool [B, T] True for real tokens
    entity_slot: Tensor  #: long [B, E] the embedding slot each entity is read with
    entity_mask: Tensor  #: bool [B, E] True for real entities
    query: Tensor  #: long [B, 2] entities of the query's head and tail
    #: float [B, E] log-odds that each person's first name is a woman's (0: unknown name, or padding);
    #: None when the data module gives no name evidence (:mod:`laart_lab.data.name_gender`)
    name_gender: Tensor | None = None

    def to(self, device: torch.device | str) -> StoryBatch:
        return _move(self, device)

    @property
    def batch_size(self) -> int:
        return int(self.tokens.shape[0])


@dataclass
class ReaderSupervision:
    """Gold facts for training only (never built for evaluation batches)."""

    pair_labels: Tensor  #: long [B, E, E] relation id, num_relations ("none") or IGNORE
    entity_genders: Tensor  #: long [B, E] 0 female, 1 male, IGNORE unknown
    gold_path: Tensor  #: long [B, K] relation ids of the gold chain from query head to tail
    gold_path_mask: Tensor  #: bool [B, K]
    pair_stated: Tensor | None = None  #: bool [B, E, E] the gold graph states the pair (:func:`pair_supervision`)

    def to(self, device: torch.device | str) -> ReaderSupervision:
        return _move(self, device)


@dataclass
class LaartBatch:
    """A batch for :class:`~laart_lab.models.laart.LaartModel`: the story, the answer to score against,
    and (training only) the reader's supervision."""

    story: StoryBatch
    target: Tensor | None  #: long [B] answer relation id (None when unknown)
    k: Tensor  #: long [B] number of typed story edges (the CLUTRR k)
    meta: dict[str, Any] = field(default_factory=dict)  #: ids, texts, entity names, task_k
    supervision: ReaderSupervision | None = None

    def to(self, device: torch.device | str) -> LaartBatch:
        return LaartBatch(
            story=self.story.to(device),
            target=None if self.target is None else self.target.to(device),
            k=self.k.to(device),
            meta=self.meta,
            supervision=None if self.supervision is None else self.supervision.to(device),
        )

    @property
    def batch_size(self) -> int:
        return self.story.batch_size


class TextCollator:
    """Encodes and pads examples into a :class:`LaartBatch`.

    Args:
        tokenizer: the training vocabulary.
        relation_index: relation name -> id.
        max_entities: number of entity slots (embeddings); a story with more entities is an error.
        training: draw random entity slots and attach :class:`ReaderSupervision`; False for evaluation
            (slot = entity, no gold facts in the batch).
        task_k / task_name: the test file's k and name, passed to ``meta``.
        mix_stories: training only: the share of stories that get a second training story (its people
            renamed) interleaved sentence by sentence, as distractor text: longer stories with more
            people than training shows otherwise, whose cross-story pairs are "none" and whose own
            pairs are supervised too. The query and answer stay the first story's.
        mix_per_batch: with ``mix_stories``, draw once per batch: a share ``mix_stories`` of the batches
            have every story mixed (for batches of like length, which a mix per story would undo).
        mix_passages: with ``mix_stories``, interleave passages rather than sentences (:func:`story_passages`).
        augment: training only: rewrites the batch's examples before they are mixed and encoded (for
            example :class:`~laart_lab.data.relation_swap.RelationSwap`).
        name_genders: fills :attr:`StoryBatch.name_gender` from each person's name (None: left None).
    """

    def __init__(
        self,
        tokenizer: WordTokenizer,
        relation_index: dict[str, int],
        max_entities: int,
        training: bool,
        task_k: int | None = None,
        task_name: str | None = None,
        mix_stories: float = 0.0,
        mix_per_batch: bool = False,
        augment: Callable[[list[Any]], list[Any]] | None = None,
        name_genders: NameGenderLexicon | None = None,
        mix_passages: bool = False,
    ) -> None:
        self.tokenizer, self.relation_index, self.max_entities = tokenizer, relation_index, max_entities
        self.training, self.task_k, self.task_name = training, task_k, task_name
        self.mix_stories, self.mix_per_batch, self.mix_passages = mix_stories, mix_per_batch, mix_passages
        if augment is not None and not training:
            raise ValueError("augment rewrites training stories; an evaluation collator reads them as written")
        self.augment = augment
        self.name_genders = name_genders

    def __call__(self, examples: list[Any]) -> LaartBatch:
        if self.augment is not None:
            examples = self.augment(examples)
        if self.training and self.mix_stories > 0 and len(examples) > 1:
            draws = torch.rand(len(examples)).tolist()
            if self.mix_per_batch:  # the whole batch or none of it, so its stories keep like lengths
                draws = [draws[0]] * len(examples)
            examples = [
                mixed_story(e, examples[(i + 1) % len(examples)], int(1e9 * draws[i]), self.mix_passages)
                if draws[i] < self.mix_stories
                and len(e.names) + len(examples[(i + 1) % len(examples)].names) <= self.max_entities
                else e
                for i, e in enumerate(examples)
            ]
        encoded = [encode_story(e, self.tokenizer) for e in examples]
        b = len(examples)
        t = max(len(s.tokens) for s in encoded)
        n = max(len(s.entity_names) for s in encoded)
        if n > self.max_entities:
            worst = max(zip(encoded, examples), key=lambda pair: len(pair[0].entity_names))[1]
            raise ValueError(
                f"example {worst.id} mentions {n} people but the model has max_entities={self.max_entities} "
                "entity slots; raise data.init_args.max_entities (and retrain)"
            )
        tokens = torch.zeros(b, t, dtype=torch.long)
        token_entity = torch.full((b, t), -1, dtype=torch.long)
        sentence = torch.zeros(b, t, dtype=torch.long)
        padding = torch.zeros(b, t, dtype=torch.bool)
        slots = torch.zeros(b, n, dtype=torch.long)
        entity_mask = torch.zeros(b, n, dtype=torch.bool)
        for i, s in enumerate(encoded):
            length, count = len(s.tokens), len(s.entity_names)
            tokens[i, :length] = torch.tensor(s.tokens)
            token_entity[i, :length] = torch.tensor(s.token_entity)
            sentence[i, :length] = torch.tensor(s.sentence)
            padding[i, :length] = True
            entity_mask[i, :count] = True
            slots[i, :count] = torch.randperm(self.max_entities)[:count] if self.training else torch.arange(count)
        story = StoryBatch(
            tokens=tokens,
            token_entity=token_entity,
            sentence=sentence,
            padding_mask=padding,
            entity_slot=slots,
            entity_mask=entity_mask,
            query=torch.tensor([s.query for s in encoded], dtype=torch.long),
        )
        if self.name_genders is not None:
            story.name_gender = torch.zeros(b, n)
            for i, s in enumerate(encoded):
                odds = [self.name_genders.log_odds(name) for name in s.entity_names]
                story.name_gender[i, : len(odds)] = torch.tensor(odds)
        known_targets = all(e.target in self.relation_index for e in examples)
        target = torch.tensor([self.relation_index[e.target] for e in examples]) if known_targets else None
        meta = {
            "id": [e.id for e in examples],
            "story": [e.story for e in examples],
            "query_text": [e.query_text for e in examples],
            "target_name": [e.target for e in examples],
            "entity_names": [s.entity_names for s in encoded],
            "task_k": self.task_k,
            "task_name": self.task_name,
        }
        batch = LaartBatch(story=story, target=target, k=torch.tensor([e.k for e in examples]), meta=meta)
        if self.training:
            batch.supervision = self._supervision(examples, encoded, n)
        return batch

    def _supervision(self, examples: list[Any], encoded: list[EncodedStory], n: int) -> ReaderSupervision:
        b = len(examples)
        labels = torch.full((b, n, n), IGNORE, dtype=torch.long)
        stated = torch.zeros(b, n, n, dtype=torch.bool)
        genders = torch.full((b, n), IGNORE, dtype=torch.long)
        max_k = max(len(e.path) for e in examples)
        gold_path = torch.zeros(b, max_k, dtype=torch.long)
        gold_mask = torch.zeros(b, max_k, dtype=torch.bool)
        for i, (example, story) in enumerate(zip(examples, encoded)):
            count = len(story.entity_names)
            pairs, pairs_stated = pair_supervision(example, story, self.relation_index)
            labels[i, :count, :count] = torch.tensor(pairs)
            stated[i, :count, :count] = torch.tensor(pairs_stated, dtype=torch.bool)
            for entity, node in enumerate(story.node_of_entity):
                if node is not None and example.genders[node] in (1, 2):
                    genders[i, entity] = example.genders[node] - 1
            gold_path[i, : len(example.path)] = torch.tensor([self.relation_index[r] for r in example.path])
            gold_mask[i, : len(example.path)] = True
        return ReaderSupervision(
            pair_labels=labels,
            entity_genders=genders,
            gold_path=gold_path,
            gold_path_mask=gold_mask,
            pair_stated=stated,
        )
