"""The ``ctm`` reasoner through laart_lab's public plugin API and Reasoner contract."""

from __future__ import annotations

import pytest
import torch
from laart_lab.components import Reasoner, ReasonerOutput, ReasoningBatch
from laart_lab.registry import get_registry

from laart_ctm.certainty import certainty_loss
from laart_ctm.reasoner import CTMReasoner

NUM_RELATIONS = 6


def hand_batch() -> ReasoningBatch:
    """Two queries: a 2-step path and a 3-step path (padded), on tiny story graphs."""
    path = torch.tensor([[1, 4, 0], [2, 3, 5]])
    path_mask = torch.tensor([[True, True, False], [True, True, True]])
    edges = torch.tensor([[[0, 1, 1], [1, 2, 4], [0, 0, 0]], [[0, 1, 2], [1, 2, 3], [2, 3, 5]]])
    edge_mask = torch.tensor([[True, True, False], [True, True, True]])
    return ReasoningBatch(
        path=path,
        path_mask=path_mask,
        edges=edges,
        edge_mask=edge_mask,
        query=torch.tensor([[0, 2], [0, 3]]),
        node_genders=torch.tensor([[1, 2, 1, 0], [2, 2, 1, 1]]),
        target=torch.tensor([3, 0]),
        path_length=torch.tensor([2, 3]),
    )


def make_reasoner(**overrides) -> CTMReasoner:
    torch.manual_seed(0)
    args = dict(
        iterations=5,
        d_model=16,
        memory_length=3,
        heads=2,
        d_attention=8,
        d_embed=8,
        n_sync_out=8,
        n_sync_action=4,
    )
    args.update(overrides)
    return CTMReasoner(NUM_RELATIONS, **args)


def test_registered_as_ctm_by_its_own_distribution() -> None:
    entry = get_registry().get("reasoner", "ctm")
    assert entry.cls is CTMReasoner
    assert entry.distribution == "laart-ctm"
    assert issubclass(entry.cls, Reasoner)


def test_forward_follows_the_contract() -> None:
    reasoner = make_reasoner().eval()
    output = reasoner(hand_batch())
    assert isinstance(output, ReasonerOutput)
    assert output.logits.shape == (2, NUM_RELATIONS)
    assert output.extras["tick_logits"].shape == (2, 5, NUM_RELATIONS)
    assert output.extras["certainty"].shape == (2, 5)
    ticks = output.extras["certainty"].argmax(dim=1)
    assert torch.equal(output.extras["most_certain_tick"], ticks)
    assert torch.equal(output.logits, output.extras["tick_logits"][torch.arange(2), ticks])
    last = make_reasoner(predict_with="last").eval()(hand_batch())
    assert torch.equal(last.logits, last.extras["tick_logits"][:, -1])


def test_loss_is_the_certainty_loss_and_trains() -> None:
    reasoner = make_reasoner()
    batch = hand_batch()
    output = reasoner(batch)
    loss = reasoner.loss(output, batch.target)
    expected = certainty_loss(output.extras["tick_logits"], output.extras["certainty"], batch.target)
    assert loss.item() == pytest.approx(expected.item())
    # differs from the base class's plain cross-entropy on the chosen tick
    assert loss.item() != pytest.approx(Reasoner.loss(reasoner, output, batch.target).item())
    optimizer = torch.optim.Adam(reasoner.parameters(), lr=1e-2)
    first = loss.item()
    for _ in range(20):
        optimizer.zero_grad()
        loss = reasoner.loss(reasoner(batch), batch.target)
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 2


def test_padding_does_not_change_the_answer() -> None:
    reasoner = make_reasoner().eval()
    batch = hand_batch()
    other = hand_batch()
    other.path[0, 2] = 5  # a padded slot
    assert torch.allclose(reasoner(batch).logits, reasoner(other).logits, atol=1e-6)


def test_too_long_path_names_the_argument() -> None:
    reasoner = make_reasoner(max_path_length=2)
    with pytest.raises(ValueError, match="max_path_length"):
        reasoner(hand_batch())


@pytest.mark.parametrize(
    ("overrides", "name"), [({"predict_with": "first"}, "predict_with"), ({"d_embed": 7}, "d_embed")]
)
def test_bad_arguments(overrides: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        make_reasoner(**overrides)


def test_relation_reasoning_uses_the_ctm_loss() -> None:
    """laart_lab's RelationReasoning (public model) trains with the reasoner's overridden loss."""
    reasoning = pytest.importorskip("laart_lab.models.reasoning")
    module = reasoning.RelationReasoning(reasoner=lambda n: make_reasoner(), num_relations=NUM_RELATIONS)
    batch = hand_batch()
    output = module(batch)
    expected = certainty_loss(output.extras["tick_logits"], output.extras["certainty"], batch.target)
    assert module.reasoner.loss(output, batch.target).item() == pytest.approx(expected.item())
