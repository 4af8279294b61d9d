"""The SLRM: a symbolic logic reasoning module over Gumbel-box relations.

How it reasons
--------------
* Every relation of the vocabulary, and every *invented* relation (a "concept" slot for compositions
  that have no name in the vocabulary, e.g. great-grandfather), is a Gumbel box (:mod:`.boxes`).
* Composing two relations is a geometric operation: a learned map of the two boxes' corners gives the
  composed box, which is then *assigned* to the relation boxes by box agreement
  ``log P(C | X) + log P(X | C)`` (both containments; 0 when the boxes coincide). The softmax over
  that agreement is the composition table ``T[a, b, c] = P(a ∘ b = c)``, closed over the vocabulary
  plus the concepts, so composing never leaves the set of known boxes and errors cannot accumulate as
  drift along a long chain.
* A path ``r1, r2, ..., rk`` is reduced by composing adjacent pairs until one relation remains. Which
  pair to compose first is *scored*, not fixed: a chart (CKY-style) over spans weighs each split by
  how plausible its composition is (the mass the learned table puts on *named* relations, summed with
  the plausibility of the sub-spans). Training marginalises softly over the orders; evaluation
  (``hard_eval``) takes the exact best derivation (max-product CKY over the learned table,
  :func:`viterbi_reduce`), a discrete symbolic reduction that extends unchanged to paths longer than
  any seen in training. Optionally (``unattested_penalty``) evaluation distrusts a *named* result for
  a pair that training never showed as a whole two-relation path: such a pair's name was only
  inferred through longer chains, where several orders could explain the answer.
* :meth:`SLRM.score` says how strongly composed premises contain a conclusion (the verifier hook);
  :meth:`SLRM.composition_table` and :meth:`SLRM.invented_relations` expose what was learned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from laart_lab.components.reasoner import Reasoner, ReasonerOutput, ReasoningBatch
from laart_lab.reasoning.boxes import Box, conditional, intersection, log_volume

_EPS = 1e-9


@dataclass
class ChartResult:
    """The outcome of a chart reduction for a batch."""

    dist: Tensor  #: [B, N] distribution over relations + concepts for the whole path
    score: Tensor  #: [B] plausibility (log named mass summed over the composition steps)
    split: dict[tuple[int, int], Tensor]  #: (i, j) -> [B] chosen split point m of span i..j (best-scored)


def compose_distributions(p: Tensor, q: Tensor, table: Tensor) -> Tensor:
    """``sum_ab p_a q_b T[a, b, :]``: the composition of two (soft) relations under table ``T [N, N, N]``."""
    n = table.shape[0]
    outer = (p.unsqueeze(2) * q.unsqueeze(1)).reshape(p.shape[0], n * n)
    return outer @ table.reshape(n * n, n)


def leaf_distributions(path: Tensor, num_boxes: int, path_probs: Tensor | None, dtype: torch.dtype) -> Tensor:
    """``[B, K, N]`` distributions of the path's relations over all N boxes: one-hot ids, or the read
    distributions ``path_probs [B, K, R]`` (R named relations; invented concepts get no mass)."""
    if path_probs is None:
        return F.one_hot(path, num_boxes).to(dtype)
    if path_probs.shape[:2] != path.shape or path_probs.shape[-1] > num_boxes:
        raise ValueError(
            f"path_probs must be [batch, length, <= {num_boxes}] matching path {tuple(path.shape)}, "
            f"got {tuple(path_probs.shape)}"
        )
    return F.pad(path_probs.to(dtype), (0, num_boxes - path_probs.shape[-1]))


def chart_reduce(
    path: Tensor,
    lengths: Tensor,
    table: Tensor,
    num_named: int,
    hard: bool = False,
    split_temperature: float = 0.2,
    path_probs: Tensor | None = None,
) -> ChartResult:
    """Reduce relation paths to one relation by composing adjacent pairs, the order chosen by score.

    ``path`` is ``long [B, K]`` (ids into the table), ``lengths`` ``long [B]`` (>= 1), ``table`` the
    composition table ``[N, N, N]`` with rows summing to 1, and relations ``0 .. num_named-1`` the
    named ones. Each span ``i..j`` keeps a distribution over the N relations and a plausibility score;
    a split ``m`` of the span composes ``(i..m)`` with ``(m..j)`` and scores
    ``score(i..m) + score(m..j) + log(named mass of the composition)``. Soft mode mixes the splits by
    ``softmax(score / split_temperature)``; hard mode keeps the best split and snaps the result to
    its most likely relation (the final span keeps its full distribution, for calibrated logits).
    ``path_probs [B, K, R]``, if given, replaces the one-hot leaves by read relation distributions.
    """
    if path.dim() != 2:
        raise ValueError(f"path must be [batch, length], got shape {tuple(path.shape)}")
    if bool((lengths < 1).any()) or int(lengths.max()) > path.shape[1]:
        raise ValueError(f"lengths must be in 1..{path.shape[1]}, got {lengths.tolist()}")
    n = table.shape[0]
    batch, max_len = path.shape
    named = torch.zeros(n, dtype=table.dtype, device=table.device)
    named[:num_named] = 1.0
    dist: dict[tuple[int, int], Tensor] = {}
    score: dict[tuple[int, int], Tensor] = {}
    split: dict[tuple[int, int], Tensor] = {}
    leaves = leaf_distributions(path, n, path_probs, table.dtype)
    for i in range(max_len):
        dist[(i, i + 1)] = leaves[:, i]
        score[(i, i + 1)] = torch.zeros(batch, dtype=table.dtype, device=table.device)
    rows = torch.arange(batch, device=path.device)
    soft_rows: dict[tuple[int, int], Tensor] = {}  # hard mode: the full row each snapped span came from
    for width in range(2, max_len + 1):
        for i in range(0, max_len - width + 1):
            j = i + width
            results, scores = [], []
            for m in range(i + 1, j):
                left, right = dist[(i, m)], dist[(m, j)]
                if hard:
                    composed = table[left.argmax(-1), right.argmax(-1)]
                else:
                    composed = compose_distributions(left, right, table)
                results.append(composed)
                scores.append(score[(i, m)] + score[(m, j)] + torch.log(composed @ named + _EPS))
            stacked_results, stacked_scores = torch.stack(results, 1), torch.stack(scores, 1)
            best = stacked_scores.argmax(1)
            split[(i, j)] = best + i + 1
            if hard:
                soft_rows[(i, j)] = stacked_results[rows, best]
                dist[(i, j)] = F.one_hot(soft_rows[(i, j)].argmax(-1), n).to(table.dtype)
                score[(i, j)] = stacked_scores[rows, best]
            else:
                weights = torch.softmax(stacked_scores / split_temperature, dim=1)
                dist[(i, j)] = (weights.unsqueeze(-1) * stacked_results).sum(1)
                score[(i, j)] = (weights * stacked_scores).sum(1)
    final = torch.zeros(batch, n, dtype=table.dtype, device=table.device)
    final_score = torch.zeros(batch, dtype=table.dtype, device=table.device)
    for length in lengths.unique().tolist():
        mask = lengths == length
        final[mask] = soft_rows.get((0, length), dist[(0, length)])[mask]
        final_score[mask] = score[(0, length)][mask]
    return ChartResult(final, final_score, split)


def _result_major_log_table(table: Tensor, log_penalty: Tensor | None) -> Tensor:
    """``log T[a, b, c]`` (+ ``log_penalty``), laid out ``[c, a, b]`` for the best-derivation charts.

    With the result first, the max over the pair ``(a, b)`` reduces one contiguous trailing block: the same values
    as reducing dims ``(a, b)`` of ``[a, b, c]``, several times faster on CPU (``benchmarks/slrm_chart.py``).
    """
    log_table = table.clamp_min(1e-12).log()
    if log_penalty is not None:
        log_table = log_table + log_penalty
    return log_table.permute(2, 0, 1).contiguous()


def viterbi_reduce(
    path: Tensor,
    lengths: Tensor,
    table: Tensor,
    log_penalty: Tensor | None = None,
    path_probs: Tensor | None = None,
) -> ChartResult:
    """Exact best-derivation reduction (max-product CKY over the composition table).

    Each span ``i..j`` keeps, for *every* relation c, the log-probability of the best way to compose the
    span's relations into c: ``best(i, j, c) = max_m max_ab best(i, m, a) + best(m, j, b) + log T[a, b, c]``.
    Which pair is composed first is thus chosen by score, and keeping every label per span (not just the
    best one) means a locally attractive composition cannot block the only derivation that completes.
    ``dist`` is the softmax of the full span's scores; ``score`` the best derivation's log-probability.
    ``log_penalty [N, N, N]``, if given, is added to ``log T`` (e.g. to distrust unattested compositions).
    ``path_probs [B, K, R]``, if given, starts each leaf at the log of its read distribution, so a
    derivation may take a less likely reading of one step when it composes into a far likelier whole.
    """
    if path.dim() != 2:
        raise ValueError(f"path must be [batch, length], got shape {tuple(path.shape)}")
    if bool((lengths < 1).any()) or int(lengths.max()) > path.shape[1]:
        raise ValueError(f"lengths must be in 1..{path.shape[1]}, got {lengths.tolist()}")
    n = table.shape[0]
    batch, max_len = path.shape
    log_table = _result_major_log_table(table, log_penalty).unsqueeze(0)  # [1, c, a, b]
    impossible = -1e4
    chart: dict[tuple[int, int], Tensor] = {}
    split: dict[tuple[int, int], Tensor] = {}
    leaves = leaf_distributions(path, n, path_probs, table.dtype)
    for i in range(max_len):
        leaf = leaves[:, i]
        chart[(i, i + 1)] = torch.where(leaf > 0, leaf.clamp_min(1e-30).log(), impossible).clamp_min(impossible)
    for width in range(2, max_len + 1):
        for i in range(0, max_len - width + 1):
            j = i + width
            candidates = []
            for m in range(i + 1, j):
                joint = chart[(i, m)][:, None, :, None] + chart[(m, j)][:, None, None, :] + log_table  # [B, c, a, b]
                candidates.append(joint.flatten(2).amax(-1))  # [B, N]
            stacked = torch.stack(candidates, 1)  # [B, splits, N]
            chart[(i, j)], best = stacked.max(1)
            split[(i, j)] = best + i + 1  # per label
    final = torch.zeros(batch, n, dtype=table.dtype, device=table.device)
    for length in lengths.unique().tolist():
        mask = lengths == length
        final[mask] = chart[(0, length)][mask]
    return ChartResult(torch.softmax(final, -1), final.max(-1).values, split)


@dataclass
class Derivation:
    """One node of a best derivation: a path step (leaf) or the composition of two sub-derivations."""

    relation: int  #: box id of this span's relation
    span: tuple[int, int]  #: path steps ``i .. j`` (exclusive end) it covers
    log_prob: float  #: log-probability of this sub-derivation
    left: Derivation | None = None
    right: Derivation | None = None

    def steps(self) -> list[Derivation]:
        """The compositions, innermost first (the order the SLRM composed them in)."""
        if self.left is None or self.right is None:
            return []
        return [*self.left.steps(), *self.right.steps(), self]


def viterbi_derivation(leaf_probs: Tensor, table: Tensor, log_penalty: Tensor | None = None) -> Derivation:
    """The best derivation of one path (the tree :func:`viterbi_reduce` scores), with back-pointers.

    ``leaf_probs [K, N]`` are the steps' distributions over the boxes, ``table [N, N, N]`` the
    composition table. Same recursion as :func:`viterbi_reduce`, for one example, keeping which split
    and which two sub-results produced every span's every label.
    """
    k, n = leaf_probs.shape
    log_table = _result_major_log_table(table, log_penalty)  # [c, a, b]
    chart: dict[tuple[int, int], Tensor] = {}
    back: dict[tuple[int, int], tuple[Tensor, Tensor, Tensor]] = {}
    for i in range(k):
        leaf = leaf_probs[i]
        chart[(i, i + 1)] = torch.where(leaf > 0, leaf.clamp_min(1e-30).log(), -1e4)
    for width in range(2, k + 1):
        for i in range(0, k - width + 1):
            j = i + width
            scores, argmaxes = [], []
            for m in range(i + 1, j):
                joint = chart[(i, m)][None, :, None] + chart[(m, j)][None, None, :] + log_table  # [c, a, b]
                value, index = joint.reshape(n, n * n).max(-1)  # index: a * n + b
                scores.append(value)
                argmaxes.append(index)
            stacked = torch.stack(scores)  # [splits, N]
            chart[(i, j)], split = stacked.max(0)
            pair = torch.stack(argmaxes).gather(0, split.unsqueeze(0)).squeeze(0)
            back[(i, j)] = (split + i + 1, pair // n, pair % n)

    def build(i: int, j: int, label: int) -> Derivation:
        node = Derivation(label, (i, j), float(chart[(i, j)][label]))
        if j - i > 1:
            split, left, right = (t[label].item() for t in back[(i, j)])
            node.left, node.right = build(i, int(split), int(left)), build(int(split), j, int(right))
        return node

    return build(0, k, int(chart[(0, k)].argmax()))


class SLRM(Reasoner):
    """Symbolic logic reasoning module: Gumbel-box relations, geometric composition, scored reduction.

    Args:
        num_relations: size of the named relation vocabulary (filled from the data).
        dim: box dimension.
        num_concepts: invented-relation slots (boxes beyond the vocabulary) for unnamed compositions.
        hidden: width of the composition map (box corners of both relations -> corners of the result).
        beta: Gumbel scale of intersections and volumes.
        split_temperature: softness of the order mixture in training.
        hard_eval: in evaluation, reduce by the exact best derivation (:func:`viterbi_reduce`).
        unnamed_prior: weight of a small prior that sends compositions to concepts unless the data
            names them (the default for pairs never seen); 0 disables it.
        reduction: how training reduces paths: ``'soft'`` (orders mixed by plausibility, see
            :func:`chart_reduce`) or ``'viterbi'`` (the best derivation per answer, :func:`viterbi_reduce`;
            gradients reach only the compositions that derivation uses).
        unattested_penalty: in evaluation, a log-penalty on *named* results of pairs never seen as a
            whole two-relation training path (a closed-world reading of the data: a composition is
            trusted to have a name when the data named it); 0 disables it.
        initial_concepts: make the invented concepts growable: only the first ``initial_concepts`` of the
            ``num_concepts`` slots are active (compositions cannot be assigned to inactive ones);
            :meth:`grow_concepts`, :meth:`merge_concepts` and :meth:`retire_concepts` change the set (the
            ``stage_concept_growth`` callback calls them). ``None`` (default): all slots, always active.
    """

    def __init__(
        self,
        num_relations: int,
        dim: int = 32,
        num_concepts: int = 8,
        hidden: int = 128,
        beta: float = 0.1,
        split_temperature: float = 0.2,
        hard_eval: bool = True,
        unnamed_prior: float = 1.0,
        reduction: str = "soft",
        unattested_penalty: float = 5.0,
        initial_concepts: int | None = None,
    ) -> None:
        super().__init__(num_relations)
        if reduction not in ("soft", "viterbi"):
            raise ValueError(f"reduction must be 'soft' or 'viterbi', got {reduction!r}")
        self.reduction = reduction
        if num_concepts < 0:
            raise ValueError(f"num_concepts must be >= 0, got {num_concepts}")
        self.dim, self.num_concepts, self.beta = dim, num_concepts, beta
        self.split_temperature, self.hard_eval, self.unnamed_prior = split_temperature, hard_eval, unnamed_prior
        n = num_relations + num_concepts
        self.box_min = nn.Parameter(torch.rand(n, dim) * 0.5)
        self.box_log_side = nn.Parameter(torch.full((n, dim), math.log(0.5)) + 0.1 * torch.randn(n, dim))
        self.compose_net = nn.Sequential(
            nn.Linear(4 * dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 2 * dim)
        )
        self.log_scale = nn.Parameter(torch.zeros(()))
        self.unattested_penalty = unattested_penalty
        # how often each pair was seen as a whole two-relation path in training (saved in checkpoints)
        self.pair_evidence: Tensor
        self.register_buffer("pair_evidence", torch.zeros(n, n))
        # growable concepts only: a buffer (saved in checkpoints) that older checkpoints do not have
        self.concept_active: Tensor | None = None
        if initial_concepts is not None:
            if not 0 <= initial_concepts <= num_concepts:
                raise ValueError(f"initial_concepts must be in 0..num_concepts={num_concepts}, got {initial_concepts}")
            del self.concept_active
            self.register_buffer("concept_active", torch.arange(num_concepts) < initial_concepts)

    # ---- geometry ------------------------------------------------------------------------------
    @property
    def num_boxes(self) -> int:
        return self.num_relations + self.num_concepts

    def boxes(self) -> Box:
        """All relation boxes (named first, then concepts): corners ``[N, dim]``."""
        return Box(self.box_min, self.box_min + self.box_log_side.exp())

    def compose_boxes(self, a: Box, b: Box) -> Box:
        """The geometric composition ``a ∘ b``: a learned map of both boxes' corners to the result's."""
        out = self.compose_net(torch.cat([a.min, a.max, b.min, b.max], dim=-1))
        lo, log_side = out.chunk(2, dim=-1)
        return Box(lo, lo + log_side.exp())

    def assignment_logits(self, x: Box) -> Tensor:
        """Box agreement ``log P(C|X) + log P(X|C)`` of boxes ``x [..., d]`` with every relation box C."""
        boxes = self.boxes()
        xe = x.unsqueeze(-2)  # [..., 1, d]
        log_inter = log_volume(intersection(xe, boxes, self.beta), self.beta)  # [..., N]
        agreement = 2 * log_inter - log_volume(xe, self.beta) - log_volume(boxes, self.beta)
        logits = self.log_scale.exp() * agreement
        if self.concept_active is not None:  # inactive concepts get (numerically) zero assignment
            active = torch.cat([self.concept_active.new_ones(self.num_relations), self.concept_active])
            logits = logits.masked_fill(~active, -1e4)
        return logits

    def composition_tensor(self) -> Tensor:
        """``T [N, N, N]``: ``T[a, b, c]`` = probability that relation a then b composes to c."""
        n, boxes = self.num_boxes, self.boxes()
        left = Box(boxes.min.unsqueeze(1).expand(n, n, self.dim), boxes.max.unsqueeze(1).expand(n, n, self.dim))
        right = Box(boxes.min.unsqueeze(0).expand(n, n, self.dim), boxes.max.unsqueeze(0).expand(n, n, self.dim))
        return torch.softmax(self.assignment_logits(self.compose_boxes(left, right)), dim=-1)

    # ---- reasoning -----------------------------------------------------------------------------
    def uses_viterbi(self, hard: bool | None = None) -> bool:
        """Whether a reduction takes the best derivation (``viterbi_reduce``) rather than the soft chart.

        ``hard=None`` applies the module's rule: always with ``reduction='viterbi'``, and at evaluation with
        ``hard_eval``. The one place this is decided, for :meth:`forward`, :meth:`reduce` and :meth:`score`.
        """
        if hard is not None:
            return hard
        return self.reduction == "viterbi" or (self.hard_eval and not self.training)

    def reduce(
        self,
        path: Tensor,
        lengths: Tensor,
        hard: bool | None = None,
        path_probs: Tensor | None = None,
        table: Tensor | None = None,
    ) -> ChartResult:
        """Reduce relation-id paths ``[B, K]`` (or read distributions ``path_probs``) to one relation each.

        ``hard`` overrides :meth:`uses_viterbi`'s rule; ``table`` is a precomputed :meth:`composition_tensor`.
        Outside training, the best derivation is penalised for pairs never attested (``unattested_penalty``).
        """
        table = self.composition_tensor() if table is None else table
        if self.uses_viterbi(hard):
            penalty = None if self.training else self.evidence_penalty()
            return viterbi_reduce(path, lengths, table, penalty, path_probs)
        return chart_reduce(path, lengths, table, self.num_relations, False, self.split_temperature, path_probs)

    def forward(self, batch: ReasoningBatch) -> ReasonerOutput:
        lengths = batch.path_mask.sum(1).clamp_min(1)
        table = self.composition_tensor()
        if self.training:
            self._record_pair_evidence(batch.path, lengths)
        # viterbi: logits are the best derivation's log-probabilities (cross-entropy renormalises them)
        result = self.reduce(batch.path, lengths, path_probs=batch.path_probs, table=table)
        logits = torch.log(result.dist[:, : self.num_relations].clamp_min(_EPS))
        aux = None
        if self.training and self.unnamed_prior > 0:
            aux = self.unnamed_prior * table[..., : self.num_relations].sum(-1).mean()
        return ReasonerOutput(
            logits=logits, aux_loss=aux, extras={"plausibility": result.score.detach(), "dist": result.dist}
        )

    @torch.no_grad()
    def _record_pair_evidence(self, path: Tensor, lengths: Tensor) -> None:
        """Count this batch's two-relation paths into ``pair_evidence``, summed over all ranks.

        Under DDP every rank sees its own shard, and DDP broadcasts rank 0's buffers before each forward:
        a per-rank count would be overwritten by rank 0's. Summing the batch counts over ranks (every rank
        runs the same number of training forwards, so the collective is matched) keeps the buffer equal to
        the count over the whole global batch stream, the same on every rank.
        """
        pairs = path[lengths == 2]
        counts = torch.zeros_like(self.pair_evidence)
        if len(pairs):
            ones = torch.ones(len(pairs), dtype=counts.dtype, device=counts.device)
            counts.index_put_((pairs[:, 0], pairs[:, 1]), ones, accumulate=True)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(counts)
        self.pair_evidence += counts

    def evidence_penalty(self) -> Tensor | None:
        """``[N, N, N]`` log-penalty on named results of pairs never seen as a two-relation training path."""
        if self.unattested_penalty <= 0 or not bool((self.pair_evidence > 0).any()):
            return None
        penalty = torch.zeros(self.num_boxes, self.num_boxes, self.num_boxes, device=self.pair_evidence.device)
        unattested = self.pair_evidence <= 0
        penalty[..., : self.num_relations] = torch.where(unattested, -self.unattested_penalty, 0.0).unsqueeze(-1)
        return penalty

    def loss(self, output: ReasonerOutput, target: Tensor) -> Tensor:
        """Negative log-probability of the target *without* renormalising over named relations, so a
        reduction that ends on an invented concept is penalised rather than excused."""
        loss = F.nll_loss(output.logits, target)
        return loss if output.aux_loss is None else loss + output.aux_loss

    @torch.no_grad()
    def score(self, premises: Tensor, conclusion: Tensor, premise_mask: Tensor | None = None) -> Tensor:
        """Consistency score in [0, 1]: how strongly the composed premises contain the conclusion.

        ``premises`` are relation ids ``[B, K]`` (or ``[K]``), ``conclusion`` ids ``[B]`` (or a scalar).
        The premises are reduced to a distribution ``p`` over relation boxes; the score is
        ``sum_n p_n * P(C | box_n) / P(box_n | box_n)`` with ``P(C | box_n) = Vol(C ∩ box_n) / Vol(box_n)``,
        the share of each composed box that lies inside the conclusion's box (normalised by the box's
        Gumbel self-containment, so a box contains itself with score 1). Near 1: the conclusion follows.
        """
        premises = premises.unsqueeze(0) if premises.dim() == 1 else premises
        conclusion = conclusion.reshape(-1).expand(premises.shape[0])
        if premise_mask is None:
            premise_mask = torch.ones_like(premises, dtype=torch.bool)
        result = self.reduce(premises, premise_mask.sum(1).clamp_min(1))
        return self.score_distribution(result.dist, conclusion)

    def score_distribution(self, dist: Tensor, conclusion: Tensor) -> Tensor:
        """:meth:`score` for premises already reduced to a distribution ``dist [B, N]`` over the boxes."""
        boxes = self.boxes()
        contained = conditional(boxes[conclusion].unsqueeze(1), boxes.unsqueeze(0), self.beta)  # [B, N]
        # a Gumbel box contains itself only to exp(-2 beta log2 sum(1/side)): normalise so that P(C | C) = 1
        self_containment = conditional(boxes, boxes, self.beta).unsqueeze(0)  # [1, N]
        return (dist * (contained / self_containment).clamp(0.0, 1.0)).sum(-1).clamp(0.0, 1.0)

    def consistency(self, output: ReasonerOutput, conclusion: Tensor) -> Tensor:
        """Box containment of ``conclusion`` in the composed premises (the SLRM's verifier, see :meth:`score`)."""
        return self.score_distribution(output.extras["dist"].detach(), conclusion)

    # ---- growable concepts (``initial_concepts``) -------------------------------------------------
    @property
    def num_active_concepts(self) -> int:
        return self.num_concepts if self.concept_active is None else int(self.concept_active.sum())

    def _growable(self) -> Tensor:
        if self.concept_active is None:
            raise ValueError("this SLRM's concepts are fixed: build it with initial_concepts to grow or merge them")
        return self.concept_active

    @torch.no_grad()
    def grow_concepts(self, n: int) -> Tensor:
        """Activate up to ``n`` free concept slots with fresh random boxes; return their box indices."""
        active = self._growable()
        free = (~active).nonzero().flatten()[: max(0, n)]
        rows = free + self.num_relations
        if len(rows):
            self.box_min[rows] = torch.rand(len(rows), self.dim, device=self.box_min.device) * 0.5
            self.box_log_side[rows] = math.log(0.5) + 0.1 * torch.randn(len(rows), self.dim, device=self.box_min.device)
            active[free] = True
        return rows

    @torch.no_grad()
    def concept_usage(self) -> Tensor:
        """Per concept slot ``[num_concepts]``: how many named pairs the table sends there (argmax)."""
        table = self.composition_tensor()[: self.num_relations, : self.num_relations]
        result = table.argmax(-1).flatten() - self.num_relations
        result = result[result >= 0]
        return torch.bincount(result, minlength=self.num_concepts)

    @torch.no_grad()
    def merge_concepts(self, threshold: float = 0.9) -> list[tuple[int, int]]:
        """Fold active concepts whose boxes contain each other (both ways, normalised score > ``threshold``)
        into the more used one (the other is deactivated: what went to it now goes to its twin).
        Returns ``(kept, dropped)`` concept indices."""
        active = self._growable()
        boxes = self.boxes()
        n = self.num_relations
        contained = conditional(boxes.unsqueeze(1), boxes.unsqueeze(0), self.beta)  # [N, N]: P(row | column)
        self_containment = conditional(boxes, boxes, self.beta)
        score = (contained / self_containment.unsqueeze(0)).clamp(0.0, 1.0)
        mutual = torch.minimum(score, score.T)[n:, n:]
        usage = self.concept_usage()
        merged = []
        for i in range(self.num_concepts):
            for j in range(i + 1, self.num_concepts):
                if active[i] and active[j] and float(mutual[i, j]) > threshold:
                    keep, drop = (i, j) if usage[i] >= usage[j] else (j, i)
                    active[drop] = False
                    merged.append((keep, drop))
        return merged

    @torch.no_grad()
    def retire_concepts(self, min_usage: int = 1) -> list[int]:
        """Deactivate active concepts that fewer than ``min_usage`` named pairs compose to; return them."""
        active = self._growable()
        usage = self.concept_usage()
        retired = [j for j in range(self.num_concepts) if active[j] and int(usage[j]) < min_usage]
        for j in retired:
            active[j] = False
        return retired

    # ---- inspection ----------------------------------------------------------------------------
    @torch.no_grad()
    def derivation(self, path: Tensor, path_probs: Tensor | None = None) -> Derivation:
        """The evaluation-time best derivation of one path (ids ``[K]``, or read distributions ``[K, R]``)."""
        probs = None if path_probs is None else path_probs[None]
        leaves = leaf_distributions(path.view(1, -1), self.num_boxes, probs, torch.float32)[0]
        return viterbi_derivation(leaves, self.composition_tensor().float(), self.evidence_penalty())

    def relation_labels(self, relation_names: list[str] | None = None) -> list[str]:
        """Names of all boxes: the vocabulary (or ``r<i>``) then ``concept_<j>`` for invented relations."""
        names = list(relation_names) if relation_names else [f"r{i}" for i in range(self.num_relations)]
        if len(names) != self.num_relations:
            raise ValueError(f"relation_names has {len(names)} names, expected {self.num_relations}")
        return names + [f"concept_{j}" for j in range(self.num_concepts)]

    @torch.no_grad()
    def composition_table(self, relation_names: list[str] | None = None, min_confidence: float = 0.0) -> list[dict]:
        """The learned table over named pairs: ``[{"left", "right", "result", "confidence"}, ...]``."""
        labels = self.relation_labels(relation_names)
        table = self.composition_tensor()[: self.num_relations, : self.num_relations]
        confidence, result = table.max(-1)
        rows = []
        for a in range(self.num_relations):
            for b in range(self.num_relations):
                if float(confidence[a, b]) >= min_confidence:
                    rows.append(
                        {
                            "left": labels[a],
                            "right": labels[b],
                            "result": labels[int(result[a, b])],
                            "confidence": float(confidence[a, b]),
                        }
                    )
        return rows

    @torch.no_grad()
    def invented_relations(
        self, relation_names: list[str] | None = None, min_confidence: float = 0.5
    ) -> dict[str, list[str]]:
        """Concepts in use: ``{"concept_j": ["left∘right", ...]}`` for named pairs the table sends there."""
        invented: dict[str, list[str]] = {}
        for row in self.composition_table(relation_names, min_confidence):
            if row["result"].startswith("concept_"):
                invented.setdefault(row["result"], []).append(f"{row['left']}∘{row['right']}")
        return invented

    @torch.no_grad()
    def box_log_volumes(self) -> Tensor:
        """Log-volume of each box ``[N]`` (named then concepts), for volume statistics."""
        return log_volume(self.boxes(), self.beta)

    def log_metrics(self) -> dict[str, float]:
        volumes = self.box_log_volumes()
        return {
            "invented_relations": float(len(self.invented_relations())),
            "box_log_volume_mean": float(volumes.mean()),
        }
