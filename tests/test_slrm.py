"""The SLRM's reduction on a hand-written composition table, and the module's public API."""

from __future__ import annotations

import pytest
import torch

from laart_lab.components.reasoner import ReasoningBatch
from laart_lab.reasoning.slrm import (
    SLRM,
    chart_reduce,
    compose_distributions,
    leaf_distributions,
    viterbi_derivation,
    viterbi_reduce,
)

# named relations 0..4, then concepts 5 (great-grandfather) and 6 (no meaningful relation)
FATHER, MOTHER, SON, GRANDFATHER, BROTHER, GREAT_GRANDFATHER, NONSENSE = range(7)
NUM_NAMED = 5
RULES = {
    (FATHER, FATHER): GRANDFATHER,
    (BROTHER, FATHER): FATHER,
    (BROTHER, BROTHER): BROTHER,
    (FATHER, SON): BROTHER,
    (GRANDFATHER, FATHER): GREAT_GRANDFATHER,
    (FATHER, GRANDFATHER): GREAT_GRANDFATHER,
    (BROTHER, GRANDFATHER): GRANDFATHER,
}


pytestmark = pytest.mark.usefixtures("one_thread")


def hand_table() -> torch.Tensor:
    """Known pairs give their result; any other pair gives the 'nonsense' concept."""
    table = torch.zeros(7, 7, 7)
    table[..., NONSENSE] = 1.0
    for (a, b), c in RULES.items():
        table[a, b] = 0.0
        table[a, b, c] = 1.0
    return table


def reduce(path: list[int], hard: bool | str, named_only: bool = True) -> torch.Tensor:
    if hard == "viterbi":  # scores of the best derivation per answer, as probabilities over the named answers
        dist = viterbi_reduce(torch.tensor([path]), torch.tensor([len(path)]), hand_table()).dist[0]
        return dist[:NUM_NAMED] / dist[:NUM_NAMED].sum() if named_only else dist
    result = chart_reduce(torch.tensor([path]), torch.tensor([len(path)]), hand_table(), NUM_NAMED, hard=hard)
    return result.dist[0]


@pytest.mark.parametrize("hard", [False, True, "viterbi"])
def test_father_of_father_is_grandfather(hard: bool) -> None:
    assert int(reduce([FATHER, FATHER], hard).argmax()) == GRANDFATHER


@pytest.mark.parametrize("hard", [False, True, "viterbi"])
def test_order_is_scored_not_left_to_right(hard: bool) -> None:
    # left to right: father∘brother is nonsense; the chart must compose brother∘father = father first
    assert int(reduce([FATHER, BROTHER, FATHER], hard).argmax()) == GRANDFATHER


@pytest.mark.parametrize("hard", [False, True, "viterbi"])
def test_paths_longer_than_training_reduce_exactly(hard: bool) -> None:
    # x's brother's brother's brother's father's brother's father = x's grandfather (k = 6)
    path = [BROTHER, BROTHER, BROTHER, FATHER, BROTHER, FATHER]
    dist = reduce(path, hard)
    assert int(dist.argmax()) == GRANDFATHER
    assert float(dist[GRANDFATHER]) > 0.99


@pytest.mark.parametrize("hard", [True, "viterbi"])
def test_unnamed_composition_lands_on_an_invented_concept(hard: bool | str) -> None:
    assert int(reduce([FATHER, FATHER, FATHER], hard=hard, named_only=False).argmax()) == GREAT_GRANDFATHER


def test_viterbi_keeps_every_label_per_span() -> None:
    """A greedy per-span choice can block the only complete derivation; the labelled chart cannot.

    [father, son, father]: father∘son = brother then brother∘father = father; every other named answer
    has no derivation at all, so the exact chart gives it (almost) zero probability."""
    dist = reduce([FATHER, SON, FATHER], hard="viterbi")
    assert int(dist.argmax()) == FATHER and float(dist[FATHER]) > 0.99


def trees(i: int, j: int) -> list[object]:
    """Every binary bracketing of the path steps ``i .. j`` (a leaf is its step index)."""
    if j - i == 1:
        return [i]
    return [(left, right) for m in range(i + 1, j) for left in trees(i, m) for right in trees(m, j)]


def tree_scores(tree: object, leaf_log: torch.Tensor, log_table: torch.Tensor) -> torch.Tensor:
    """Best log-probability per label of one fixed bracketing: max over the labels of its two halves."""
    if isinstance(tree, int):
        return leaf_log[tree]
    left, right = (tree_scores(half, leaf_log, log_table) for half in tree)  # type: ignore[union-attr]
    n = log_table.shape[0]
    pairs = [left[a] + right[b] + log_table[a, b] for a in range(n) for b in range(n)]  # each over the result c
    return torch.stack(pairs).max(0).values


@pytest.mark.parametrize("seed", [0, 1])
def test_viterbi_reduce_is_the_best_of_every_bracketing(seed: int) -> None:
    """An independent reference: enumerate every binary tree of each path and score each on its own."""
    generator = torch.Generator().manual_seed(seed)
    n, batch, max_len = 5, 4, 5
    table = torch.rand(n, n, n, generator=generator).softmax(-1)
    penalty = -3.0 * (torch.rand(n, n, n, generator=generator) < 0.3)
    probs = (torch.randn(batch, max_len, 4, generator=generator) * 2).softmax(-1)  # 4 named of 5 boxes
    probs[0, 1] = torch.tensor([0.0, 1.0, 0.0, 0.0])  # a one-hot step: zero leaves are "impossible"
    path, lengths = probs.argmax(-1), torch.tensor([5, 3, 1, 4])
    reduced = viterbi_reduce(path, lengths, table, penalty, probs)
    log_table = table.log() + penalty
    leaves = leaf_distributions(path, n, probs, torch.float32)
    for row in range(batch):
        length = int(lengths[row])
        leaf_log = torch.where(leaves[row] > 0, leaves[row].clamp_min(1e-30).log(), -1e4).clamp_min(-1e4)
        best = torch.stack([tree_scores(t, leaf_log, log_table) for t in trees(0, length)]).max(0).values
        torch.testing.assert_close(reduced.dist[row], best.softmax(-1))
        torch.testing.assert_close(reduced.score[row], best.max())
        derivation = viterbi_derivation(leaves[row, :length], table, penalty)
        assert derivation.log_prob == pytest.approx(float(best.max()), abs=1e-4)
        assert derivation.relation == int(best.argmax())


def test_batch_with_mixed_lengths_matches_single_examples() -> None:
    paths = [[FATHER, FATHER, 0, 0], [BROTHER, BROTHER, BROTHER, FATHER], [SON, 0, 0, 0]]
    batch = chart_reduce(torch.tensor(paths), torch.tensor([2, 4, 1]), hand_table(), NUM_NAMED, hard=True)
    assert batch.dist.argmax(-1).tolist() == [GRANDFATHER, FATHER, SON]


def test_compose_distributions_is_bilinear_table_lookup() -> None:
    table = hand_table()
    p = torch.zeros(1, 7)
    p[0, FATHER], p[0, BROTHER] = 0.5, 0.5
    q = torch.zeros(1, 7)
    q[0, FATHER] = 1.0
    out = compose_distributions(p, q, table)[0]
    assert out[GRANDFATHER].item() == pytest.approx(0.5) and out[FATHER].item() == pytest.approx(0.5)


def make_batch(paths: list[list[int]], targets: list[int]) -> ReasoningBatch:
    k = max(map(len, paths))
    path = torch.tensor([p + [0] * (k - len(p)) for p in paths])
    mask = torch.tensor([[i < len(p) for i in range(k)] for p in paths])
    n = len(paths)
    return ReasoningBatch(
        path=path,
        path_mask=mask,
        edges=torch.zeros(n, 1, 3, dtype=torch.long),
        edge_mask=torch.zeros(n, 1, dtype=torch.bool),
        query=torch.zeros(n, 2, dtype=torch.long),
        node_genders=torch.zeros(n, 1, dtype=torch.long),
        target=torch.tensor(targets),
        path_length=torch.tensor([len(p) for p in paths]),
    )


def test_slrm_api_shapes_and_ranges() -> None:
    torch.manual_seed(0)
    model = SLRM(NUM_NAMED, dim=8, num_concepts=2, hidden=16)
    out = model(make_batch([[FATHER, FATHER], [BROTHER, FATHER, SON]], [GRANDFATHER, BROTHER]))
    assert out.logits.shape == (2, NUM_NAMED) and out.aux_loss is not None
    assert model.composition_tensor().shape == (7, 7, 7)
    assert torch.allclose(model.composition_tensor().sum(-1), torch.ones(7, 7))
    rows = model.composition_table(["f", "m", "s", "gf", "b"])
    assert len(rows) == NUM_NAMED**2 and {"left", "right", "result", "confidence"} <= set(rows[0])
    score = model.score(torch.tensor([FATHER, FATHER]), torch.tensor(GRANDFATHER))
    assert score.shape == (1,) and 0.0 <= float(score) <= 1.0
    assert model.relation_labels()[-1] == "concept_1"
    with pytest.raises(ValueError, match="relation_names"):
        model.relation_labels(["too", "few"])


def test_slrm_learns_the_hand_table_from_pairs() -> None:
    """Trained on the k=2 pairs of the hand table, its learned composition table reproduces the rules."""
    torch.manual_seed(0)
    named_rules = [(a, b, c) for (a, b), c in RULES.items() if c < NUM_NAMED]
    batch = make_batch([[a, b] for a, b, _ in named_rules], [c for _, _, c in named_rules])
    model = SLRM(NUM_NAMED, dim=8, num_concepts=2, hidden=32, unnamed_prior=0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(150):
        loss = model.loss(model(batch), batch.target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.pair_evidence[FATHER, FATHER] > 0 and model.pair_evidence[SON, SON] == 0  # seen k=2 pairs
    penalty = model.evidence_penalty()
    assert penalty is not None and penalty[SON, SON, GRANDFATHER] < 0 and penalty[FATHER, FATHER, GRANDFATHER] == 0
    assert penalty[SON, SON, NUM_NAMED] == 0  # concepts are never penalised
    table = model.composition_tensor()
    for a, b, c in named_rules:
        assert int(table[a, b].argmax()) == c, (a, b, c)
    model.eval()
    assert model.score(torch.tensor([FATHER, FATHER]), torch.tensor(GRANDFATHER)).item() > 0.5
    assert model.score(torch.tensor([FATHER, FATHER]), torch.tensor(SON)).item() < 0.5
