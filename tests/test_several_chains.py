"""Several read chains: Yen's k cheapest chains against brute force, and LaartModel's weighing of their answers
against a per-chain loop."""

from __future__ import annotations

import itertools

import pytest
import torch

from laart_lab.models.laart import LaartModel
from laart_lab.reasoning.read_paths import best_paths, k_best_paths
from tests.test_laart import generated_text_module

pytestmark = pytest.mark.usefixtures("one_thread")


def all_chain_costs(cost: list[list[float]], head: int, tail: int, max_steps: int) -> list[float]:
    """Every loopless chain's cost, cheapest first (brute force)."""
    others = [x for x in range(len(cost)) if x not in (head, tail)]
    costs = []
    for length in range(min(len(others), max_steps - 1) + 1):
        for middle in itertools.permutations(others, length):
            chain = [head, *middle, tail]
            costs.append(sum(cost[a][b] for a, b in zip(chain[:-1], chain[1:])))
    return sorted(costs)


@pytest.mark.parametrize("max_steps", [16, 2])
def test_k_best_paths_are_the_k_cheapest_loopless_chains(max_steps: int) -> None:
    generator = torch.Generator().manual_seed(1)
    related = torch.rand(12, 6, 6, generator=generator) ** 3
    mask = torch.ones(12, 6, dtype=torch.bool)
    query = torch.tensor([[0, 5]] * 12)
    ranked = k_best_paths(related, mask, query, k=5, max_steps=max_steps, step_cost=0.05)
    singles = best_paths(related, mask, query, max_steps=max_steps, step_cost=0.05)
    for b, chains in enumerate(ranked):
        cost = (-torch.log(related[b]) + 0.05).tolist()
        expected = all_chain_costs(cost, 0, 5, max_steps)[:5]
        assert [c for _, c in chains] == pytest.approx(expected, rel=1e-5)
        assert chains[0][0] == singles[b]
        for chain, c in chains:
            assert chain[0] == 0 and chain[-1] == 5 and len(set(chain)) == len(chain) and len(chain) - 1 <= max_steps
            assert c == pytest.approx(sum(cost[x][y] for x, y in zip(chain[:-1], chain[1:])), rel=1e-5)
    # two people only: one chain, whatever k asks
    assert [len(c) for c in k_best_paths(related[:1, :2, :2], mask[:1, :2], torch.tensor([[0, 1]]), 4)] == [1]
    with pytest.raises(ValueError, match="k counts chains"):
        k_best_paths(related, mask, query, k=0)


def test_the_slow_answer_weighs_each_chains_answer_by_its_probability(monkeypatch: pytest.MonkeyPatch) -> None:
    module = generated_text_module()
    model = LaartModel(reasoner={"class_path": "slrm"}, d_model=32, n_layers=1, n_heads=2, chains=3,
                       chain_temperature=0.5, **module.data_facts()).eval()  # fmt: skip
    batch = next(iter(module.val_dataloader()))
    with torch.no_grad():
        out = model(batch)
        reader = model.reader(batch.story)
        related = 1.0 - reader.pair_logits.softmax(-1)[..., -1]
        ranked = k_best_paths(related, batch.story.entity_mask, batch.story.query, 3, model.max_path_steps, 0.05)
        assert any(len(chains) > 1 for chains in ranked)
        for i, chains in enumerate(ranked):  # the reference: one story, one chain at a time
            one = type(reader)(
                **{f: getattr(reader, f)[i : i + 1] for f in ("pair_logits", "gender_logits", "fast_logits")}
            )
            answers, support = [], []
            for chain, _ in chains:
                slow = model.reasoner(model._read_batch(one, [chain], None))
                answers.append(slow.logits.softmax(-1)[0])
                support.append(model.reasoner.consistency(slow, out.fast_pred[i : i + 1])[0])
            weight = torch.softmax(-torch.tensor([c for _, c in chains]) / 0.5, 0)
            expected = (weight.unsqueeze(-1) * torch.stack(answers)).sum(0)
            assert torch.allclose(out.slow.logits[i].exp(), expected, atol=1e-5)
            assert int(out.slow_pred[i]) == int(expected.argmax())
            assert float(out.consistency[i]) == pytest.approx(float((weight * torch.stack(support)).sum()), abs=1e-5)
            assert out.paths[i] == chains[0][0]
    model.train()  # training composes the best chain alone

    def no_search(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("training searched several chains")

    monkeypatch.setattr("laart_lab.models.laart.k_best_paths", no_search)
    assert len(model(batch).paths) == batch.batch_size
    with pytest.raises(ValueError, match="chains counts read chains"):
        LaartModel(reasoner={"class_path": "slrm"}, chains=0, **module.data_facts())
