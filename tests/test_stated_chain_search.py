"""The reader's stated head and LaartModel's chain_search="stated": the loss by hand, the wiring, the refusals."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from laart_lab.data.clutrr_text import IGNORE, LaartBatch
from laart_lab.errors import UserError
from laart_lab.models.laart import LaartModel, _stated_loss
from tests.test_laart import generated_text_module

pytestmark = pytest.mark.usefixtures("one_thread")


def stated_model(module, **kwargs) -> LaartModel:  # noqa: ANN001
    return LaartModel(reasoner={"class_path": "slrm"}, d_model=32, n_layers=1, n_heads=2, chain_search="stated",
                      **module.data_facts(), **kwargs)  # fmt: skip


def test_the_stated_loss_counts_labelled_pairs_only() -> None:
    none = 7
    labels = torch.tensor([[[IGNORE, 3, none], [2, IGNORE, IGNORE], [none, 5, IGNORE]]])  # 3 = stated, 5 implied
    stated = torch.tensor([[[False, True, False], [True, False, False], [False, False, False]]])
    logits = torch.tensor([[[9.0, 2.0, -1.0], [0.5, 9.0, 9.0], [1.5, 0.0, 9.0]]])
    # by hand: the five labelled pairs (0,1) (0,2) (1,0) (2,0) (2,1), targets 1 0 1 0 0
    expected = (
        sum(
            F.binary_cross_entropy_with_logits(torch.tensor(x), torch.tensor(t))
            for x, t in ((2.0, 1.0), (-1.0, 0.0), (0.5, 1.0), (1.5, 0.0), (0.0, 0.0))
        )
        / 5
    )
    assert float(_stated_loss(logits, labels, stated)) == pytest.approx(float(expected))
    zero = _stated_loss(logits.requires_grad_(), torch.full_like(labels, IGNORE), stated)
    assert float(zero.detach()) == 0.0 and zero.requires_grad


def test_the_stated_head_trains_and_reads_a_pair_from_both_sides() -> None:
    module = generated_text_module()
    model = stated_model(module)
    batch = next(iter(module.train_dataloader()))
    out = model.reader(batch.story)
    assert out.stated_logits is not None
    assert torch.allclose(out.stated_logits, out.stated_logits.transpose(1, 2))  # one fact, either direction
    loss = model.training_step(batch, 0)
    loss.backward()
    last = model.reader.pair_head[-1]
    assert last.weight.grad is not None and last.weight.grad[-1].abs().sum() > 0  # the stated output learns
    plain = LaartModel(reasoner={"class_path": "slrm"}, d_model=32, n_layers=1, n_heads=2, **module.data_facts())
    assert plain.reader(batch.story).stated_logits is None
    assert last.out_features == plain.reader.pair_head[-1].out_features + 1


def test_the_chain_walks_stated_facts_not_the_related_shortcut() -> None:
    """The reader says head and tail are related (a shortcut) but that only head-middle and middle-tail are
    stated: chain_search="stated" walks the stated facts; the default walks the shortcut."""
    module = generated_text_module()
    model = stated_model(module).eval()
    batch = next(iter(module.val_dataloader()))
    one = dataclasses.replace(
        batch.story, **{f.name: getattr(batch.story, f.name)[:1] for f in dataclasses.fields(batch.story)}
    )
    n = int(one.entity_mask.sum())
    head, tail = (int(v) for v in one.query[0])
    middle = next(e for e in range(n) if e not in (head, tail))
    read = model.reader

    def rigged(story, word_dropout=0.0):  # noqa: ANN001, ANN202
        out = read.__class__.forward(read, story, word_dropout)
        pair = torch.full_like(out.pair_logits, -9.0)
        pair[..., -1] = 9.0  # every pair unrelated ...
        pair[0, head, tail, 0] = pair[0, tail, head, 0] = 9.0  # ... but the query's two, strongly
        for x, y in ((head, middle), (middle, tail)):
            pair[0, x, y, 0] = pair[0, y, x, 0] = 2.0
        stated = torch.full_like(out.pair_logits[..., 0], -9.0)
        for x, y in ((head, middle), (middle, tail)):
            stated[0, x, y] = stated[0, y, x] = 9.0
        return dataclasses.replace(out, pair_logits=pair, stated_logits=stated)

    model.reader.forward = rigged  # type: ignore[method-assign]
    single = LaartBatch(story=one, target=batch.target[:1], k=batch.k[:1], meta={})
    assert model(single).paths == [[head, middle, tail]]

    def related_only(story, word_dropout=0.0):  # noqa: ANN001, ANN202  # the default search's reader
        return dataclasses.replace(rigged(story, word_dropout), stated_logits=None)

    model.reader.forward = related_only  # type: ignore[method-assign]
    assert model(single).paths == [[head, tail]]


def test_a_checkpoint_searched_another_way_is_refused_with_the_fix() -> None:
    module = generated_text_module()
    model = stated_model(module)
    with pytest.raises(UserError, match="chain_search='related'.*--model.init_args.chain_search related"):
        model.on_load_checkpoint({"hyper_parameters": {"d_model": 32}})  # written before chain_search existed
    model.on_load_checkpoint({"hyper_parameters": dict(model.hparams)})
    with pytest.raises(ValueError, match="chain_search must be one of"):
        LaartModel(reasoner={"class_path": "slrm"}, chain_search="shortest", **module.data_facts())  # type: ignore[arg-type]


def test_predictions_say_how_surely_each_fact_is_stated() -> None:
    module = generated_text_module()
    model = stated_model(module).eval()
    batch = next(iter(module.val_dataloader()))
    with torch.no_grad():
        rows = model.predict_step(batch, 0)
        stated = model.reader(batch.story).stated_logits.sigmoid()
    for i, row in enumerate(rows):
        names = batch.meta["entity_names"][i]
        for step in row["chain"]:
            x, y = names.index(step["head"]), names.index(step["tail"])
            assert step["stated"] == pytest.approx(float(stated[i, x, y]), abs=1e-4)
        assert all(0.0 <= fact["stated"] <= 1.0 for fact in row["extracted_edges"])
