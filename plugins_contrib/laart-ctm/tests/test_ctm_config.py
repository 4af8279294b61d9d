"""``CTMConfig``: one list of CTM hyper-parameters, flat in recipes and checkpoints, checked once.

The fixtures in ``tests/fixtures`` were written by laart-ctm 0.1.0 *before* ``CTMConfig`` existed (flat
constructor arguments in every class): a ``parity_ctm`` and a ``clutrr_ctm`` checkpoint of tiny models
saved by ``laart-lab fit``, and the outputs those models gave on fixed inputs.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import torch
from jsonargparse import ArgumentParser
from laart_lab.components import ReasoningBatch
from laart_lab.models.reasoning import RelationReasoning
from laart_lab.recipe_check import check_config

from laart_ctm.config import CTMConfig, CTMReasonerConfig
from laart_ctm.core import ContinuousThoughtMachine
from laart_ctm.parity import ParityCTM
from laart_ctm.reasoner import CTMReasoner

FIXTURES = Path(__file__).parent / "fixtures"
FIELDS = [field.name for field in dataclasses.fields(CTMConfig)]


def test_every_wrapper_takes_every_field_flat_with_its_defaults() -> None:
    expected = {field.name: field.default for field in dataclasses.fields(CTMConfig)}
    for cls, defaults in ((ParityCTM, {}), (CTMReasoner, {"iterations": 12, "memory_length": 6})):
        parameters = inspect.signature(cls).parameters
        assert {name: parameters[name].default for name in FIELDS} == {**expected, **defaults}, cls.__name__
    assert CTMReasonerConfig().iterations == 12 and CTMReasonerConfig().memory_length == 6


def test_the_reasoner_passes_nlm_init_gain_down() -> None:
    torch.manual_seed(0)
    plain = CTMReasoner(4, d_embed=8, d_model=16, n_sync_out=8, n_sync_action=4, nlm_hidden=4)
    torch.manual_seed(0)
    gained = CTMReasoner(
        4, d_embed=8, d_model=16, n_sync_out=8, n_sync_action=4, nlm_hidden=4, nlm_init_gain=3.0
    )
    assert gained.ctm.config.nlm_init_gain == 3.0
    for a, b in zip(plain.ctm.neurons.layers, gained.ctm.neurons.layers):
        assert torch.allclose(b.weight, 3.0 * a.weight)


def test_the_core_builds_what_the_config_says() -> None:
    config = CTMConfig(
        iterations=3, d_model=10, memory_length=4, heads=2, d_attention=6, n_sync_out=7, n_sync_action=5
    )
    ctm = ContinuousThoughtMachine(5, [2], config)
    output = ctm(torch.randn(2, 3, 5))
    assert output.logits.shape == (2, 3, 2) and output.post_activations.shape == (2, 3, 10)
    assert ctm.start_trace.shape == (10, 4) and ctm.q_proj.in_features == 5 and ctm.output.in_features == 7


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"iterations": 0}, "iterations=0"),
        ({"heads": 5}, "heads=5"),
        ({"self_pairs": 40}, "self_pairs=40"),
        ({"out_decay_init": 16.0}, "out_decay_init=16.0"),
        ({"nlm_init_gain": 0.0}, "nlm_init_gain=0.0"),
    ],
)
def test_a_bad_field_is_named_on_one_line(fields: dict, named: str) -> None:
    for build in (CTMConfig, lambda **f: ParityCTM(seq_len=4, **f), lambda **f: CTMReasoner(4, **f)):
        with pytest.raises(ValueError, match=named) as caught:
            build(**fields)
        assert "\n" not in str(caught.value)


def test_a_misspelt_field_gets_its_close_match() -> None:
    with pytest.raises(TypeError, match="'iteratons' \\(did you mean 'iterations'\\?\\)"):
        ParityCTM(seq_len=4, iteratons=3)
    with pytest.raises(TypeError, match="'nlm_gain' \\(did you mean 'nlm_init_gain'\\?\\)"):
        CTMReasoner(4, nlm_gain=3.0)


def test_recipe_check_sees_the_flat_fields() -> None:
    spec = {"class_path": "ctm", "init_args": {"iteratons": 4, "heads": "many"}}
    config = {
        "model": {
            "class_path": "laart_lab.models.reasoning.RelationReasoning",
            "init_args": {"reasoner": spec},
        },
        "data": {"class_path": "clutrr"},
    }
    problems = check_config(config)
    assert any("'iteratons'" in p and "Did you mean 'iterations'?" in p for p in problems), problems
    assert any("heads" in p and "'many'" in p for p in problems), problems
    parity = {"model": {"class_path": "laart_ctm.parity.ParityCTM", "init_args": {"nlm_init_gian": 3.0}}}
    assert any("Did you mean 'nlm_init_gain'?" in p for p in check_config(parity))


def test_jsonargparse_takes_the_fields_flat_with_their_help() -> None:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(CTMReasoner, "reasoner", skip={"num_relations"})
    parsed = parser.parse_object({"reasoner": {"iterations": 5, "nlm_init_gain": 2.0}})
    assert parsed.reasoner.iterations == 5 and parsed.reasoner.memory_length == 6  # the reasoner's default
    assert "internal ticks" in parser.format_help()
    with pytest.raises(Exception, match="iteratons"):
        parser.parse_object({"reasoner": {"iteratons": 5}})


def test_hparams_stay_flat_and_plain() -> None:
    model = ParityCTM(
        seq_len=4, iterations=3, d_model=12, heads=2, d_attention=8, n_sync_out=8, n_sync_action=4
    )
    hparams = dict(model.hparams)
    assert {name: hparams[name] for name in FIELDS} == model.ctm.config.as_dict()
    assert hparams["iterations"] == 3 and hparams["nlm_init_gain"] == 1.0  # given and default alike
    assert all(isinstance(value, (int, float, str, type(None))) for value in hparams.values())


def test_a_parity_checkpoint_from_before_the_config_loads_and_answers_as_before() -> None:
    expected = torch.load(FIXTURES / "outputs_v0.1.0.pt", weights_only=True)
    model = ParityCTM.load_from_checkpoint(FIXTURES / "parity_ctm_v0.1.0.ckpt", weights_only=True).eval()
    assert model.ctm.config == CTMConfig(
        iterations=3, d_model=12, memory_length=2, heads=2, d_attention=8, n_sync_out=8, n_sync_action=4,
        nlm_hidden=2, action_decay_init=1.0, nlm_init_gain=3.0,
    )  # fmt: skip
    with torch.no_grad():
        logits = model(expected["parity_bits"]).logits
    assert torch.allclose(logits, expected["parity_logits"], atol=1e-6)


def test_a_clutrr_checkpoint_from_before_the_config_loads_and_answers_as_before() -> None:
    expected = torch.load(FIXTURES / "outputs_v0.1.0.pt", weights_only=True)
    model = RelationReasoning.load_from_checkpoint(
        FIXTURES / "clutrr_ctm_v0.1.0.ckpt", weights_only=True
    ).eval()
    assert isinstance(model.reasoner, CTMReasoner) and model.reasoner.ctm.config.memory_length == 2
    mask = expected["reasoning_mask"]
    batch = ReasoningBatch(
        path=expected["reasoning_path"],
        path_mask=mask,
        edges=torch.zeros(2, 3, 3, dtype=torch.long),
        edge_mask=mask,
        query=torch.tensor([[0, 2], [0, 3]]),
        node_genders=torch.zeros(2, 4, dtype=torch.long),
    )
    with torch.no_grad():
        tick_logits = model(batch).extras["tick_logits"]
    assert torch.allclose(tick_logits, expected["reasoning_tick_logits"], atol=1e-6)
