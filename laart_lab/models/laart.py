"""``LaartModel``: LAART itself. A transformer reads the story; a reasoner composes what it read.

The two systems and the check between them:

* **fast**: :class:`~laart_lab.models.story_reader.StoryReader` (a bidirectional transformer built from
  the recipe's attention plugin, optionally with a memory plugin) reads the story and query text and
  answers the query directly; it also reads the relation of every ordered pair of entities.
* **slow**: the most confident chain of read relations from the query's head to its tail
  (:func:`~laart_lab.reasoning.read_paths.best_paths`) goes to the reasoner plugin in the slow slot
  (``slrm`` by default; ``gru``, ``gnn``, ``transformer``, ``ctm`` fit too: the same classes that
  ``RelationReasoning`` trains). The SLRM receives each step's relation *distribution*
  (``ReasoningBatch.path_probs``; at evaluation softened by ``read_temperature``), so the answer's loss reaches
  the reader through the composition.
* **the check**: the reasoner's :meth:`~laart_lab.components.reasoner.Reasoner.consistency` (for the
  SLRM, box containment: does the fast answer follow from the read premises?) keeps the fast answer
  when it reaches ``check_threshold`` and replaces it by the slow answer otherwise. The threshold is
  chosen at every validation, on validation stories only, from ``check_grid`` (0 = always fast,
  above 1 = always slow; ties go to the larger threshold, the one that trusts the reasoner more), and
  saved in the checkpoint; test and predict use the saved one.

Training (gold facts supervise training only; evaluation batches carry none): the reader's pair
labels and entity genders (:mod:`laart_lab.data.clutrr_text`), the fast answer, the reasoner on the
gold chain, and the reasoner on the read chain (end to end).

Metrics (``val/`` and ``test/``): ``acc`` (laart), ``fast_acc``, ``slow_acc``, each also per k
(``acc_k{k}``, ``fast_acc_k{k}``, ``slow_acc_k{k}``), ``acc_mean`` (unweighted over k), ``edge_acc``
(the relation read for each gold edge's pair is the gold one; gold edges come from the data module,
outside the batch), ``edge_found`` (the reader marks the pair as stated: P(none) < 0.5),
``edge_acc_strict`` (both), ``edge_acc_unseen_wording`` (edge_acc over the gold edges whose stating
sentences are worded unlike any training sentence: on validation, the part that reads like the test),
``story_edges_all_right`` (share of stories with every gold edge read
right), ``gender_acc`` (the people of known gender, whose gender the gender head reads right; gold genders
also come from the data module), ``check_overrule_rate``
and ``check_overrule_right`` (how often the check replaced the fast answer, and how often the
replacement was right), ``check_threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from laart_lab.components.attention import AttentionFactory
from laart_lab.components.memory import MemoryFactory
from laart_lab.components.reasoner import (
    ExplainsDerivations,
    Reasoner,
    ReasonerFactory,
    ReasonerOutput,
    ReasoningBatch,
)
from laart_lab.data.clutrr_text import GENDER_NAMES, IGNORE, LaartBatch
from laart_lab.data.kinship_algebra import GENDER_OF_TERM, INVERSE_KIND, KIND_OF
from laart_lab.errors import UserError
from laart_lab.models.charlm import DEFAULT_ATTENTION
from laart_lab.models.kinship_word_head import KinshipLexicon
from laart_lab.models.lr_schedule import LrSchedule, check_schedule, fit_timer, time_progress, warmup_cosine
from laart_lab.models.story_reader import GenderEvidence, MentionChoice, ReaderOutput, StoryReader
from laart_lab.reasoning.read_paths import best_paths, k_best_paths
from laart_lab.registry import component_factory, make_specs_plain

#: settings that change how the reader's weights are read, and their value in checkpoints from before each existed
READING_SETTINGS: dict[str, Any] = {
    "gender_evidence": "pooled", "relation_head": "pair", "chain_search": "related", "pair_context": False,
    "name_gender_input": False, "mention_choice": "closest",
}  # fmt: skip
RelationHead = Literal["pair", "kinship_word"]
ChainSearch = Literal["related", "stated"]
EDGE_COUNTS = (
    "edge_total", "edge_right", "edge_found", "edge_strict", "edge_unseen_total", "edge_unseen_right",
    "gender_total", "gender_right",
)  # fmt: skip
DEFAULT_CHECK_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01)


@dataclass
class LaartOutput:
    """One forward pass: what each system answered and why."""

    reader: ReaderOutput
    paths: list[list[int]]  #: per story, the entity chain the slow system composed
    read_batch: ReasoningBatch  #: that chain as the reasoner's input
    slow: ReasonerOutput
    fast_pred: Tensor  #: long [B]
    slow_pred: Tensor  #: long [B]
    consistency: Tensor  #: float [B] the reasoner's support for the fast answer


class LaartModel(LightningModule):
    """Reader (fast system) + reasoner (slow system) + check, on CLUTRR-style stories.

    Args:
        reasoner: the slow system's factory ``reasoner(num_relations)`` (a registered name in recipes).
        attention: the reader's attention backend factory (default ``softmax``).
        memory, memory_layer: optional memory plugin for the reader.
        num_relations, relation_names, vocabulary, max_entities: data facts (filled by the CLI).
        d_model, n_layers, n_heads, dropout: the reader.
        word_dropout: share of words replaced by ``<unk>`` in training (robustness to unseen wording).
        lr, weight_decay, warmup_steps, min_lr_ratio: AdamW with linear warm-up then cosine decay to
            ``lr * min_lr_ratio`` over the fit.
        lr_schedule: what the cosine runs over: ``"steps"`` (the fit's estimated steps) or ``"time"``
            (whichever is further spent, steps or the Trainer's ``max_time``; :mod:`~laart_lab.models.lr_schedule`),
            so a time-budgeted recipe finishes its decay on a slow machine too.
        pair_weight, gender_weight, fast_weight, gold_path_weight, read_path_weight: loss weights.
        max_path_steps, step_cost: the read chain search (:func:`best_paths`).
        chains, chain_temperature: at evaluation and prediction, the slow system composes the ``chains``
            cheapest read chains (:func:`k_best_paths`) and weighs their answers by ``softmax(-cost /
            chain_temperature)``; 1: the best chain alone. Training composes the best chain.
        read_temperature: at evaluation and prediction, the slow system takes each read step as
            ``softmax(pair logits / read_temperature)`` over the relations (training: 1). Above 1 the reasoner's
            derivation may more readily take a less likely reading of a step that composes far better; the
            argmax reading, and so the chain, are unchanged. Chosen on validation (README).
        chain_search: what a step of the read chain costs: ``"related"``, ``-log P(x and y are related)`` (what
            checkpoints before it was an option were trained with), or ``"stated"``, ``-log P(the story states
            x-y)`` from the reader's stated head, trained on the gold chain's facts, so the chain walks the
            stated facts rather than shortcuts through pairs the story only implies (:class:`StoryReader`).
        check_grid: thresholds the check chooses from on validation.
        gender_factorised: read each relation as a gender-free kind times the gender of its second
            person (:class:`StoryReader` ``relation_factors``); None: whenever every relation name is a
            kinship term that has a gender (:mod:`laart_lab.data.kinship_algebra`).
        gender_evidence: the gender head reads an entity's mean mention state (``"pooled"``, what
            checkpoints before it was an option were trained with), sums each mention's log-odds
            (``"mentions"``), or adds to those what the pair head reads of the entity's gender at each pair
            read within one sentence (``"pairs"``; :class:`StoryReader`).
        relation_head: ``"pair"`` (the free pair head reads the relation from the mentions' states; what
            checkpoints before it was an option were trained with) or ``"kinship_word"`` (the kind must come
            from a kinship word near the pair's mentions, context only says which word and whom it names:
            :mod:`~laart_lab.models.kinship_word_head`; needs gender-factorised relations).
        name_gender_weight: at evaluation and prediction, each person's first-name gender log-odds (from the data's
            name list, ``data.init_args.name_genders``) times this weight is added to the gender head's log-odds
            (training: never); 0: off (:class:`StoryReader`). Chosen on validation (README).
        name_gender_input: the reader's transformer also reads each mention's first-name gender log-odds, in training
            and at evaluation (:class:`StoryReader`); False: what checkpoints before it was an option were trained with.
        pair_context: the pair head also reads a context vector pooled for each pair, where both of its
            mentions attend (:class:`~laart_lab.models.story_reader.PairContext`); False: what checkpoints before
            it was an option were trained with.
        mention_choice: where the reader reads a pair that no sentence names together: at the closest mentions
            (``"closest"``; what checkpoints before it was an option were trained with) or at a learned choice of
            mention pair (``"learned"``; :mod:`~laart_lab.models.mention_choice`).
    """

    def __init__(
        self,
        reasoner: ReasonerFactory,
        attention: AttentionFactory | None = None,
        memory: MemoryFactory | None = None,
        memory_layer: int = -1,
        num_relations: int | None = None,
        relation_names: list[str] | None = None,
        vocabulary: list[str] | None = None,
        max_entities: int | None = None,
        d_model: int = 128,
        n_layers: int = 3,
        n_heads: int = 4,
        dropout: float = 0.1,
        word_dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.1,
        lr_schedule: LrSchedule = "steps",
        pair_weight: float = 1.0,
        gender_weight: float = 0.2,
        fast_weight: float = 1.0,
        gold_path_weight: float = 1.0,
        read_path_weight: float = 1.0,
        max_path_steps: int = 16,
        step_cost: float = 0.05,
        check_grid: list[float] | None = None,
        gender_factorised: bool | None = None,
        gender_evidence: GenderEvidence = "pooled",
        relation_head: RelationHead = "pair",
        chain_search: ChainSearch = "related",
        chains: int = 1,
        chain_temperature: float = 1.0,
        read_temperature: float = 1.0,
        pair_context: bool = False,
        name_gender_weight: float = 0.0,
        name_gender_input: bool = False,
        mention_choice: MentionChoice = "closest",
    ) -> None:
        super().__init__()
        if relation_names is not None:
            num_relations = num_relations or len(relation_names)
            if len(relation_names) != num_relations:
                raise ValueError(f"relation_names has {len(relation_names)} names but num_relations={num_relations}")
        if num_relations is None or vocabulary is None or max_entities is None:
            raise ValueError(
                "LaartModel needs num_relations, vocabulary and max_entities: use a data module whose data_facts() "
                "gives them "
                "(clutrr with view: text), or pass them in model.init_args"
            )
        self.save_hyperparameters()  # under LightningCLI: the recipe's plain class_path/init_args specs
        make_specs_plain(self.hparams, {"attention": "attention", "memory": "memory", "reasoner": "reasoner"})
        self.num_relations = num_relations
        self.relation_names = list(relation_names) if relation_names else [f"r{i}" for i in range(num_relations)]
        self._relation_index = {name: i for i, name in enumerate(self.relation_names)}
        self.vocabulary = list(vocabulary)
        factors = relation_factors(self.relation_names)
        if gender_factorised and factors is None:
            raise ValueError(
                "gender_factorised needs every relation to be a gendered kinship term (sister, father-in-law, ...); "
                f"these are not: {[n for n in self.relation_names if n not in GENDER_OF_TERM]}"
            )
        if gender_factorised is False:
            factors = None
        if relation_head not in get_args(RelationHead):
            raise ValueError(f"relation_head must be one of {get_args(RelationHead)}, got {relation_head!r}")
        lexicon = None
        if relation_head == "kinship_word":
            if factors is None:
                raise ValueError(
                    "relation_head='kinship_word' reads kinship words as kinds of link: it needs gender-factorised "
                    "relations (every relation a gendered kinship term, gender_factorised not False)"
                )
            lexicon = KinshipLexicon.build(self.vocabulary, relation_kinds(self.relation_names))
        if chain_search not in get_args(ChainSearch):
            raise ValueError(f"chain_search must be one of {get_args(ChainSearch)}, got {chain_search!r}")
        self.chain_search = chain_search
        if chains < 1 or chain_temperature <= 0:
            raise ValueError(
                f"chains counts read chains (>= 1) and chain_temperature must be > 0; got {chains}, {chain_temperature}"
            )
        self.chains, self.chain_temperature = chains, chain_temperature
        if read_temperature <= 0:
            raise ValueError(f"read_temperature divides the pair logits (> 0; 1: as trained); got {read_temperature}")
        self.read_temperature = read_temperature
        if name_gender_weight < 0:
            raise ValueError(f"name_gender_weight weighs name evidence (>= 0; 0: off); got {name_gender_weight}")
        attention_factory = component_factory(attention or DEFAULT_ATTENTION, "attention")
        self.reader = StoryReader(
            len(self.vocabulary),
            num_relations,
            max_entities,
            attention_factory,
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            dropout=dropout,
            memory=component_factory(memory, "memory"),
            memory_layer=memory_layer,
            relation_factors=factors,
            inverse_kinds=inverse_kinds(self.relation_names) if factors is not None else None,
            gender_evidence=gender_evidence,
            kinship_lexicon=lexicon,
            stated_head=chain_search == "stated",
            pair_context=pair_context,
            name_gender_weight=name_gender_weight,
            name_gender_input=name_gender_input,
            mention_choice=mention_choice,
        )
        self.reasoner: Reasoner = component_factory(reasoner, "reasoner")(num_relations)
        check_schedule(lr_schedule, "LaartModel")
        self.word_dropout, self.lr, self.weight_decay, self.warmup_steps = word_dropout, lr, weight_decay, warmup_steps
        self.min_lr_ratio = min_lr_ratio
        self.weights = {
            "pair": pair_weight,
            "gender": gender_weight,
            "fast": fast_weight,
            "gold_path": gold_path_weight,
            "read_path": read_path_weight,
            "route": pair_weight,
            "pair_free": pair_weight,
            "stated": pair_weight,
        }
        self.max_path_steps, self.step_cost = max_path_steps, step_cost
        self.check_grid = sorted(check_grid if check_grid is not None else DEFAULT_CHECK_GRID)
        self.check_threshold: Tensor
        self.register_buffer("check_threshold", torch.tensor(0.5))
        self._records: dict[str, list[dict[str, Tensor]]] = {"val": [], "test": []}
        self.last_test_table: dict[str, dict[int, float]] = {}
        self.last_val_table: dict[str, dict[int, float]] = {}

    # ---- the two systems -------------------------------------------------------------------------
    def forward(self, batch: LaartBatch) -> LaartOutput:
        reader = self.reader(batch.story, self.word_dropout)
        if reader.stated_logits is not None:  # chain_search "stated"
            related = reader.stated_logits.sigmoid()
        else:
            related = 1.0 - reader.pair_logits.float().softmax(-1)[..., -1]
        fast_pred = reader.fast_logits.argmax(-1)
        if self.chains > 1 and not self.training:
            return self._several_chains(batch, reader, related, fast_pred)
        paths = best_paths(related, batch.story.entity_mask, batch.story.query, self.max_path_steps, self.step_cost)
        read_batch = self._read_batch(reader, paths, batch.target)
        slow = self.reasoner(read_batch)
        slow_pred = slow.logits.argmax(-1)
        consistency = self.reasoner.consistency(slow, fast_pred).detach()
        return LaartOutput(reader, paths, read_batch, slow, fast_pred, slow_pred, consistency)

    def _several_chains(
        self, batch: LaartBatch, reader: ReaderOutput, related: Tensor, fast_pred: Tensor
    ) -> LaartOutput:
        """Evaluation with ``chains`` > 1: the reasoner composes each of the cheapest chains; the slow answer is
        the chains' answer distributions weighted by ``softmax(-cost / chain_temperature)`` over a story's chains,
        and the check's consistency is weighted the same way. ``paths`` and ``read_batch`` are the best chain's."""
        ranked = k_best_paths(
            related, batch.story.entity_mask, batch.story.query, self.chains, self.max_path_steps, self.step_cost
        )
        device = fast_pred.device
        story_of = torch.tensor([i for i, chains in enumerate(ranked) for _ in chains], device=device)
        rank_of = torch.tensor([r for chains in ranked for r in range(len(chains))], device=device)
        costs = torch.full((len(ranked), self.chains), math.inf, device=device)  # a story with fewer chains: inf
        costs[story_of, rank_of] = torch.tensor([cost for chains in ranked for _, cost in chains], device=device)
        weight = torch.softmax(-costs / self.chain_temperature, dim=1)[story_of, rank_of]  # per chain
        flat = [chain for chains in ranked for chain, _ in chains]
        expanded = ReaderOutput(
            pair_logits=reader.pair_logits[story_of],
            gender_logits=reader.gender_logits[story_of],
            fast_logits=reader.fast_logits[story_of],
        )
        slow = self.reasoner(self._read_batch(expanded, flat, None))
        answers = torch.zeros(len(ranked), self.num_relations, device=device)
        answers = answers.index_add(0, story_of, weight.unsqueeze(-1) * slow.logits.float().softmax(-1))
        support = self.reasoner.consistency(slow, fast_pred[story_of]).detach().float()
        consistency = torch.zeros(len(ranked), device=device).index_add(0, story_of, weight * support)
        best = [chains[0][0] for chains in ranked]
        combined = ReasonerOutput(logits=answers.clamp_min(1e-12).log())
        return LaartOutput(
            reader,
            best,
            self._read_batch(reader, best, batch.target),
            combined,
            fast_pred,
            answers.argmax(-1),
            consistency,
        )

    def _read_batch(self, reader: ReaderOutput, paths: list[list[int]], target: Tensor | None) -> ReasoningBatch:
        """The read chains as a :class:`ReasoningBatch`: argmax ids, distributions, a path graph, genders."""
        device = reader.pair_logits.device
        b, steps = len(paths), max(len(p) - 1 for p in paths)
        rows = torch.tensor([i for i, p in enumerate(paths) for _ in p[:-1]], device=device)
        src = torch.tensor([x for p in paths for x in p[:-1]], device=device)
        dst = torch.tensor([y for p in paths for y in p[1:]], device=device)
        position = torch.tensor([s for p in paths for s in range(len(p) - 1)], device=device)
        temperature = 1.0 if self.training else self.read_temperature
        step_logits = reader.pair_logits[rows, src, dst, : self.num_relations].float()
        step_probs = (step_logits / temperature).softmax(-1)  # [steps, R]
        path_probs = torch.zeros(b, steps, self.num_relations, device=device)
        path_probs = path_probs.index_put((rows, position), step_probs)
        path_mask = torch.zeros(b, steps, dtype=torch.bool, device=device).index_put(
            (rows, position), torch.ones_like(rows, dtype=torch.bool)
        )
        path = path_probs.argmax(-1).masked_fill(~path_mask, 0)
        return _chain_batch(path, path_mask, target, path_probs, self._path_genders(reader, paths))

    def _path_genders(self, reader: ReaderOutput, paths: list[list[int]]) -> Tensor:
        """Read genders (1 female, 2 male) of the entities along each chain, ``[B, steps + 1]``."""
        genders = reader.gender_logits.argmax(-1) + 1
        out = torch.zeros(len(paths), max(len(p) for p in paths), dtype=torch.long, device=genders.device)
        for i, p in enumerate(paths):
            out[i, : len(p)] = genders[i, p]
        return out

    # ---- training --------------------------------------------------------------------------------
    def training_step(self, batch: LaartBatch, batch_idx: int) -> Tensor:
        if batch.supervision is None or batch.target is None:
            raise ValueError("training batches need reader supervision and targets (TextCollator(training=True))")
        sup, target = batch.supervision, batch.target
        out = self(batch)
        r = out.reader
        losses = {
            "pair": _labelled_cross_entropy(r.pair_logits, sup.pair_labels),
            "gender": _labelled_cross_entropy(r.gender_logits, sup.entity_genders),
            "fast": F.cross_entropy(r.fast_logits.float(), target),
            "gold_path": self.reasoner.loss(
                self.reasoner(_gold_batch(sup.gold_path, sup.gold_path_mask, target)), target
            ),
            "read_path": self.reasoner.loss(out.slow, target),
        }
        if r.route_logits is not None and r.sayable_kinds is not None:  # the kinship-word head
            route = self.route_targets(r.sayable_kinds, sup.pair_labels, sup.pair_stated)
            losses["route"] = _labelled_cross_entropy(r.route_logits, route)
        if r.stated_logits is not None:
            losses["stated"] = _stated_loss(r.stated_logits, sup.pair_labels, sup.pair_stated)
        if r.free_pair_logits is not None:  # the free head reads every pair on its own as well
            losses["pair_free"] = _labelled_cross_entropy(r.free_pair_logits, sup.pair_labels)
        loss = torch.stack([self.weights[name] * value for name, value in losses.items()]).sum()
        size = batch.batch_size
        for name, value in losses.items():
            self.log(f"train/loss_{name}", value, batch_size=size)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/fast_acc", (out.fast_pred == target).float().mean(), batch_size=size)
        self.log("train/slow_acc", (out.slow_pred == target).float().mean(), prog_bar=True, batch_size=size)
        return loss

    def route_targets(self, sayable_kinds: Tensor, pair_labels: Tensor, pair_stated: Tensor | None) -> Tensor:
        """The kinship-word head's route for each labelled pair ``[B, E, E]``: by word (0) when the gold graph
        states the pair (``pair_stated``; None: every pair counts as stated) and a kinship word in its
        window can say the kind of its label, else by the free head (1: relations the chain only implies,
        and stated ones no single word near them says, "his son's daughter [C]"); IGNORE for pairs
        labelled "none" or not at all."""
        kind_of = self.reader.relation_kind
        labelled = (pair_labels != IGNORE) & (pair_labels < self.num_relations)
        if kind_of is None:
            return torch.full_like(pair_labels, IGNORE)
        kind = kind_of[pair_labels.clamp(0, self.num_relations - 1)]
        by_word = sayable_kinds.gather(-1, kind.unsqueeze(-1)).squeeze(-1)
        if pair_stated is not None:
            by_word = by_word & pair_stated
        return torch.where(labelled, (~by_word).long(), IGNORE)

    # ---- evaluation ------------------------------------------------------------------------------
    def validation_step(self, batch: LaartBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: LaartBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, "test")

    def _evaluate(self, batch: LaartBatch, stage: str) -> LaartOutput:
        if batch.supervision is not None:
            raise ValueError(
                f"{stage} batches must not carry gold facts (build them with TextCollator(training=False))"
            )
        if batch.target is None:
            raise ValueError(f"{stage} needs answers to score against; this batch has none")
        out = self(batch)
        k = batch.meta.get("task_k")
        ks = torch.full_like(batch.k, int(k)) if k is not None else batch.k
        edge = self._edge_scores(batch, out.reader)
        self._records[stage].append(
            {
                "k": ks.cpu(),
                "target": batch.target.cpu(),
                "fast": out.fast_pred.cpu(),
                "slow": out.slow_pred.cpu(),
                "consistency": out.consistency.float().cpu(),
                **edge,
            }
        )
        return out

    def _edge_scores(self, batch: LaartBatch, reader: ReaderOutput) -> dict[str, Tensor]:
        """Per story, against the gold chain edges (which the data module keeps aside): how many gold
        edges there are, how many the reader read with the right relation (argmax over the relations),
        how many it marked as stated (P(none) < 0.5), and how many both; and, of the edges the data module
        says are stated only in wording training never shows (``gold_edge_wording``), how many and how
        many read right; and how many of the story's people of known gender the gender head reads right."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        gold_edges = getattr(datamodule, "gold_edges", None)
        b = batch.batch_size
        counts = {name: torch.zeros(b) for name in EDGE_COUNTS}
        if gold_edges is None:
            return counts
        ids = batch.meta["id"]
        wording_of = getattr(datamodule, "gold_edge_wording", None)
        wordings = wording_of(ids) if wording_of is not None else [[] for _ in ids]
        relation = reader.pair_logits[..., : self.num_relations].argmax(-1).cpu()
        stated = (reader.pair_logits.float().softmax(-1)[..., -1] < 0.5).cpu()
        index = self._relation_index
        genders_of = getattr(datamodule, "gold_genders", None)
        if genders_of is not None:
            read_gender = (reader.gender_logits.argmax(-1) + 1).cpu()
            for i, genders in enumerate(genders_of(ids)):
                known = [(e, g) for e, g in enumerate(genders) if g]
                counts["gender_total"][i] = len(known)
                counts["gender_right"][i] = sum(int(read_gender[i, e]) == g for e, g in known)
        for i, (edges, wording) in enumerate(zip(gold_edges(ids), wordings)):
            for e, (a, c, name) in enumerate(edges):
                right, found = int(relation[i, a, c]) == index.get(name, -1), bool(stated[i, a, c])
                counts["edge_total"][i] += 1
                counts["edge_right"][i] += right
                counts["edge_found"][i] += found
                counts["edge_strict"][i] += right and found
                if e < len(wording) and wording[e] == "unseen":
                    counts["edge_unseen_total"][i] += 1
                    counts["edge_unseen_right"][i] += right
        return counts

    def on_validation_epoch_end(self) -> None:
        records = self._gather("val")
        if records is None:
            return
        if not self.trainer.sanity_checking:
            self.check_threshold.fill_(self._choose_threshold(records))
        self.last_val_table = self._log_stage("val", records)

    def on_test_epoch_end(self) -> None:
        records = self._gather("test")
        if records is None:
            return
        self.last_test_table = self._log_stage("test", records)
        if self.trainer.is_global_zero:
            print(format_laart_table(self.last_test_table, float(self.check_threshold), type(self.reasoner).__name__))

    def _gather(self, stage: str) -> dict[str, Tensor] | None:
        chunks = self._records[stage]
        self._records[stage] = []
        if not chunks:
            return None
        return {key: torch.cat([c[key] for c in chunks]) for key in chunks[0]}

    def _combined(self, records: dict[str, Tensor], threshold: float) -> Tensor:
        return torch.where(records["consistency"] >= threshold, records["fast"], records["slow"])

    def _choose_threshold(self, records: dict[str, Tensor]) -> float:
        """The check's threshold with the best validation accuracy (ties: the larger threshold)."""
        scored = [(float((self._combined(records, t) == records["target"]).float().mean()), t) for t in self.check_grid]
        return max(scored)[1]

    def _log_stage(self, stage: str, records: dict[str, Tensor]) -> dict[str, dict[int, float]]:
        threshold = float(self.check_threshold)
        answers = {"acc": self._combined(records, threshold), "fast_acc": records["fast"], "slow_acc": records["slow"]}
        target, ks = records["target"], records["k"]
        table: dict[str, dict[int, float]] = {}
        for name, pred in answers.items():
            right = (pred == target).float()
            self.log(f"{stage}/{name}", right.mean(), prog_bar=name == "acc")
            table[name] = {int(k): float(right[ks == k].mean()) for k in ks.unique()}
            for k, value in table[name].items():
                self.log(f"{stage}/{name}_k{k}", value)
        self.log(f"{stage}/acc_mean", sum(table["acc"].values()) / len(table["acc"]))
        total = records["edge_total"].sum()
        if total > 0:
            self.log(f"{stage}/edge_acc", records["edge_right"].sum() / total)
            self.log(f"{stage}/edge_found", records["edge_found"].sum() / total)
            self.log(f"{stage}/edge_acc_strict", records["edge_strict"].sum() / total)
            self.log(f"{stage}/story_edges_all_right", (records["edge_right"] == records["edge_total"]).float().mean())
            unseen = records["edge_unseen_total"].sum()
            if unseen > 0:  # validation's test-like part: sentences worded unlike any training sentence
                self.log(f"{stage}/edge_acc_unseen_wording", records["edge_unseen_right"].sum() / unseen)
            for key, count in (("edge_acc", "edge_right"), ("edge_acc_strict", "edge_strict")):
                table[key] = _ratio_per_k(records[count], records["edge_total"], ks)
            unseen_by_k = {int(k): records["edge_unseen_total"][ks == k].sum() for k in ks.unique().tolist()}
            table["edge_acc_unseen_wording"] = {
                k: float(records["edge_unseen_right"][ks == k].sum() / edges)
                for k, edges in unseen_by_k.items()
                if edges > 0
            }
        if records["gender_total"].sum() > 0:  # people of known gender whose gender the reader reads right
            self.log(f"{stage}/gender_acc", records["gender_right"].sum() / records["gender_total"].sum())
            table["gender_acc"] = _ratio_per_k(records["gender_right"], records["gender_total"], ks)
        overruled = answers["acc"] != records["fast"]
        self.log(f"{stage}/check_overrule_rate", overruled.float().mean())
        if bool(overruled.any()):
            self.log(f"{stage}/check_overrule_right", (records["slow"][overruled] == target[overruled]).float().mean())
        self.log(f"{stage}/check_threshold", threshold)
        return table

    # ---- prediction --------------------------------------------------------------------------------
    def predict_step(self, batch: LaartBatch, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """One readable row per story: answers, read facts, read genders, the chain, and the reasoner's derivation."""
        out = self(batch)
        names = self.relation_names
        threshold = float(self.check_threshold)
        probs = out.reader.pair_logits.float().softmax(-1).cpu()
        gender_probs = out.reader.gender_logits.float().softmax(-1).cpu()  # [B, E, 2]: female, male
        read_from = self._read_from(batch, out.reader)
        stated = None if out.reader.stated_logits is None else out.reader.stated_logits.sigmoid().cpu()
        heard = batch.story.name_gender if self.reader.name_gender_weight > 0 else None  # the names, if heard
        name_odds = None if heard is None else heard.cpu()

        def from_name(i: int, x: int) -> dict[str, float]:  # what the first name said (log-odds female), if heard
            return {} if name_odds is None else {"name_log_odds_female": round(float(name_odds[i, x]), 3)}

        def stated_at(i: int, x: int, y: int) -> dict[str, float]:  # chain_search "stated": what the chain walks
            return {} if stated is None else {"stated": round(float(stated[i, x, y]), 4)}

        rows = []
        for i in range(batch.batch_size):
            entities = batch.meta["entity_names"][i]
            n = len(entities)
            facts = []
            for x in range(n):
                for y in range(n):
                    if x != y and float(probs[i, x, y, -1]) < 0.5:
                        conf, rel = probs[i, x, y, : self.num_relations].max(-1)
                        facts.append(
                            {
                                "head": entities[x],
                                "relation": names[int(rel)],
                                "tail": entities[y],
                                "confidence": round(float(conf), 4),
                                **stated_at(i, x, y),
                                **read_from(i, x, y),
                            }
                        )
            path = out.paths[i]
            chain = [
                {
                    "head": entities[a],
                    "relation": names[int(out.read_batch.path[i, s])],
                    "tail": entities[c],
                    **stated_at(i, a, c),
                }
                for s, (a, c) in enumerate(zip(path[:-1], path[1:]))
            ]
            fast, slow = int(out.fast_pred[i]), int(out.slow_pred[i])
            consistency = float(out.consistency[i])
            laart = fast if consistency >= threshold else slow
            rows.append(
                {
                    "id": batch.meta["id"][i],
                    "k": int(batch.k[i]),
                    "query": [entities[int(batch.story.query[i, 0])], entities[int(batch.story.query[i, 1])]],
                    "gold": batch.meta["target_name"][i],
                    "fast": names[fast],
                    "slow": names[slow],
                    "laart": names[laart],
                    "check": {"consistency": round(consistency, 4), "threshold": threshold, "kept_fast": laart == fast},
                    "extracted_edges": facts,
                    "genders": {
                        entities[x]: {
                            "gender": GENDER_NAMES[int(gender_probs[i, x].argmax()) + 1],
                            "confidence": round(float(gender_probs[i, x].max()), 4),
                            **from_name(i, x),
                        }
                        for x in range(n)
                    },
                    "path": [entities[e] for e in path],
                    "chain": chain,
                    "derivation": self._derivation(out.read_batch, i, entities, path),
                }
            )
        return rows

    def _read_from(self, batch: LaartBatch, reader: ReaderOutput) -> Callable[[int, int, int], dict[str, str]]:
        """``(story, x, y) -> {}``, or with the kinship-word head: the route that read the pair (``word`` or
        ``free``) and, by word, the kinship word it was read from (``"read_from": "sister"``)."""
        if reader.route_logits is None or reader.evidence_token is None:
            return lambda i, x, y: {}
        by_word = (reader.route_logits[..., 0] >= reader.route_logits[..., 1]).cpu()
        evidence = reader.evidence_token.cpu()
        tokens = batch.story.tokens.cpu()

        def read_from(i: int, x: int, y: int) -> dict[str, str]:
            position = int(evidence[i, x, y])
            if position < 0 or not bool(by_word[i, x, y]):
                return {"route": "free"}
            return {"route": "word", "read_from": self.vocabulary[int(tokens[i, position])]}

        return read_from

    def _derivation(self, read_batch: ReasoningBatch, i: int, entities: list[str], path: list[int]) -> list[str] | None:
        """The SLRM's composition steps, innermost first, as sentences (None for other reasoners)."""
        if not isinstance(self.reasoner, ExplainsDerivations):
            return None
        steps = len(path) - 1
        probs = None if read_batch.path_probs is None else read_batch.path_probs[i, :steps]
        tree = self.reasoner.derivation(read_batch.path[i, :steps], probs)
        labels = self.reasoner.relation_labels(self.relation_names)
        label = (lambda r: labels[r]) if labels else (lambda r: str(r))  # noqa: E731
        lines = []
        for node in tree.steps():
            a, m, c = node.span[0], node.left.span[1], node.span[1]  # type: ignore[union-attr]
            lines.append(
                f"{entities[path[a]]} -{label(node.left.relation)}-> {entities[path[m]]} "  # type: ignore[union-attr]
                f"-{label(node.right.relation)}-> {entities[path[c]]}: "  # type: ignore[union-attr]
                f"{entities[path[a]]}'s {label(node.relation)} is {entities[path[c]]}"
            )
        return lines

    # ---- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        decay = [p for n, p in self.named_parameters() if p.dim() >= 2 and "embed" not in n and ".word." not in n]
        no_decay = [
            p for n, p in self.named_parameters() if not (p.dim() >= 2 and "embed" not in n and ".word." not in n)
        ]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.lr,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 10_000
        warmup = min(self.warmup_steps, max(1, total // 10))
        by_time = self.hparams.get("lr_schedule", "steps") == "time"
        if by_time:
            fit_timer(self._trainer, "LaartModel")  # fail now, with the fix, rather than at the first step

        def schedule(step: int) -> float:
            spent = time_progress(self._trainer, "LaartModel") if by_time else 0.0
            return warmup_cosine(step, warmup, total, self.min_lr_ratio, spent)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["relation_names"] = list(self.relation_names)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse weights trained to be read another way: a recipe's settings build this model, the
        checkpoint only fills its weights, and the same weights read another way answer wrongly, silently."""
        saved = checkpoint.get("hyper_parameters") or {}
        for name, before_it_existed in READING_SETTINGS.items():
            trained, here = saved.get(name, before_it_existed), self.hparams.get(name, before_it_existed)
            if trained != here:
                raise UserError(
                    f"this checkpoint's reader was trained with {name}={trained!r} but the model is built with "
                    f"{name}={here!r}; pass --model.init_args.{name} {trained} (or the recipe it was trained with)"
                )


def _labelled_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy over the positions whose label is not IGNORE (``logits`` ``[..., C]``, ``labels`` ``[...]``);
    a zero that keeps the graph when every label is IGNORE."""
    if not bool((labels != IGNORE).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.flatten(0, -2).float(), labels.flatten(), ignore_index=IGNORE)


def _stated_loss(stated_logits: Tensor, pair_labels: Tensor, pair_stated: Tensor | None) -> Tensor:
    """Binary cross-entropy of the stated head over the labelled pairs (a relation or "none"): 1 where the
    gold graph states the pair, 0 where it only implies it or the pair is unrelated."""
    labelled = pair_labels != IGNORE
    if pair_stated is None or not bool(labelled.any()):
        return stated_logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(stated_logits[labelled], pair_stated[labelled].float())


def relation_kinds(relation_names: list[str]) -> list[str]:
    """The kinds of link the relations name, in kind-id order (the ids of :func:`relation_factors`)."""
    return sorted({KIND_OF[name] for name in relation_names})


def relation_factors(relation_names: list[str]) -> list[tuple[int, int]] | None:
    """``(kind id, gender id)`` per relation (gender 0 female, 1 male), or None if a name is no gendered
    kinship term."""
    if not all(name in KIND_OF and name in GENDER_OF_TERM for name in relation_names):
        return None
    kinds = relation_kinds(relation_names)
    return [(kinds.index(KIND_OF[name]), 0 if GENDER_OF_TERM[name] == "female" else 1) for name in relation_names]


def inverse_kinds(relation_names: list[str]) -> list[int] | None:
    """The inverse of each kind of :func:`relation_factors` (by kind id), or None if one is missing."""
    kinds = relation_kinds(relation_names)
    if not all(INVERSE_KIND[kind] in kinds for kind in kinds):
        return None
    return [kinds.index(INVERSE_KIND[kind]) for kind in kinds]


def _chain_batch(
    path: Tensor, path_mask: Tensor, target: Tensor | None, path_probs: Tensor | None, node_genders: Tensor
) -> ReasoningBatch:
    """A relation chain as a :class:`ReasoningBatch`: path view, and the graph view of the same chain."""
    b, steps = path.shape
    device = path.device
    position = torch.arange(steps, device=device).expand(b, -1)
    edges = torch.stack([position, position + 1, path], -1)
    lengths = path_mask.sum(1)
    return ReasoningBatch(
        path=path,
        path_mask=path_mask,
        edges=edges,
        edge_mask=path_mask,
        query=torch.stack([torch.zeros_like(lengths), lengths], -1),
        node_genders=node_genders,
        target=target,
        path_length=lengths,
        path_probs=path_probs,
    )


def _gold_batch(path: Tensor, path_mask: Tensor, target: Tensor) -> ReasoningBatch:
    """The gold chain (training only) in the reasoner's format; genders unknown (0)."""
    genders = torch.zeros(path.shape[0], path.shape[1] + 1, dtype=torch.long, device=path.device)
    return _chain_batch(path, path_mask, target, None, genders)


def _ratio_per_k(count: Tensor, total: Tensor, ks: Tensor) -> dict[int, float]:
    """Per k, ``count`` summed over the k's stories over ``total`` summed the same way."""
    return {int(k): float(count[ks == k].sum() / total[ks == k].sum().clamp_min(1)) for k in ks.unique().tolist()}


def format_laart_table(table: dict[str, dict[int, float]], threshold: float, reasoner: str = "") -> str:
    """Per-k accuracy of the fast, slow and combined answers (and edge accuracy) as plain text."""
    ks = sorted(table["acc"])
    columns = [("fast", "fast_acc"), ("slow", "slow_acc"), ("laart", "acc")]
    if "edge_acc" in table:
        columns += [("edges", "edge_acc"), ("strict", "edge_acc_strict")]
    title = f"LAART test accuracy per k (slow: {reasoner}; check keeps fast when consistency >= {threshold:g})"
    lines = [title, f"{'k':>5}" + "".join(f"  {label:>7}" for label, _ in columns)]
    for k in ks:
        lines.append(f"{k:>5}" + "".join(f"  {table[key].get(k, float('nan')):>7.4f}" for _, key in columns))
    lines.append(
        f"{'mean':>5}"
        + "".join(f"  {sum(table[key].values()) / len(table[key]):>7.4f}" for _, key in columns)
        + f"  (unweighted over {len(ks)} k)"
    )
    return "\n".join(lines)
