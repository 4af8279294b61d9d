"""The CTM core on hand-sized examples: shapes, certainty, the loss over ticks, synchronisation and NLMs."""

from __future__ import annotations

import math

import pytest
import torch

from laart_ctm.certainty import (
    certainty_loss,
    normalised_entropy,
    per_tick_cross_entropy,
    position_certainty,
    select_ticks,
    tick_certainty,
)
from laart_ctm.config import CTMConfig
from laart_ctm.core import ContinuousThoughtMachine
from laart_ctm.nlm import NeuronLevelModels, PerNeuronLinear
from laart_ctm.synapse import SynapseMLP, SynapseUNet, make_synapse
from laart_ctm.synchronisation import Synchronisation


def small_ctm(d_input: int = 6, out_shape: list[int] | None = None, **overrides) -> ContinuousThoughtMachine:
    args = dict(
        iterations=4,
        d_model=10,
        memory_length=3,
        heads=2,
        d_attention=8,
        n_sync_out=7,
        n_sync_action=5,
        nlm_hidden=4,
    )
    args.update(overrides)
    torch.manual_seed(0)
    return ContinuousThoughtMachine(
        d_input, [5] if out_shape is None else out_shape, CTMConfig(**args)
    ).eval()


def test_shapes_and_ticks_independent_of_input_length() -> None:
    ctm = small_ctm()
    for tokens in (3, 11):
        output = ctm(torch.randn(2, tokens, 6))
        assert output.logits.shape == (2, 4, 5)
        assert output.certainty.shape == (2, 4)
        assert output.post_activations.shape == (2, 4, 10)
        assert output.attention.shape == (2, 4, tokens)
        assert output.prediction("certain").shape == output.prediction("last").shape == (2, 5)
        assert torch.all((output.certainty >= 0) & (output.certainty <= 1))


def test_multi_position_prediction_shape() -> None:
    output = small_ctm(out_shape=[3, 2])(torch.randn(4, 5, 6))
    assert output.logits.shape == (4, 4, 3, 2)
    assert output.prediction().shape == (4, 3, 2)


def test_certainty_is_one_minus_normalised_entropy() -> None:
    logits = torch.tensor([[[0.0, 0.0, 0.0], [5.0, 1.0, -2.0]]])  # [B=1, T=2, C=3]
    by_hand = []
    for row in logits[0].tolist():
        z = sum(math.exp(v) for v in row)
        p = [math.exp(v) / z for v in row]
        by_hand.append(1 - (-sum(q * math.log(q) for q in p) / math.log(3)))
    assert tick_certainty(logits)[0].tolist() == pytest.approx(by_hand, abs=1e-6)
    assert by_hand[0] == pytest.approx(0.0, abs=1e-9)  # uniform: no certainty
    # with positions, certainty averages the positions' normalised entropies
    positional = torch.randn(2, 3, 4, 2)
    expected = 1 - normalised_entropy(positional).mean(dim=2)
    assert torch.allclose(tick_certainty(positional), expected)


def _ce(row: list[float], target: int) -> float:
    return -row[target] + math.log(sum(math.exp(v) for v in row))


def test_certainty_loss_hand_example() -> None:
    # B=2 examples, T=3 ticks, C=2 classes.
    logits = torch.tensor(
        [
            [
                [0.0, 0.0],
                [2.0, 0.0],
                [0.0, 3.0],
            ],  # target 0: lowest loss at tick 1, most certain at tick 2 (wrong)
            [[1.0, 0.0], [0.0, 0.5], [0.0, 4.0]],  # target 1: lowest loss and most certain both at tick 2
        ]
    )
    target = torch.tensor([0, 1])
    certainty = tick_certainty(logits)
    assert certainty.argmax(dim=1).tolist() == [2, 2]
    ce = [[_ce(logits[b, t].tolist(), int(target[b])) for t in range(3)] for b in range(2)]
    assert per_tick_cross_entropy(logits, target).tolist() == [pytest.approx(row, abs=1e-6) for row in ce]
    lowest = [ce[0][1], ce[1][2]]
    certain = [ce[0][2], ce[1][2]]
    expected = (sum(lowest) / 2 + sum(certain) / 2) / 2
    assert certainty_loss(logits, certainty, target).item() == pytest.approx(expected, abs=1e-6)


def test_certainty_loss_with_positions_averages_positions_per_tick() -> None:
    torch.manual_seed(1)
    logits, target = torch.randn(3, 4, 5, 2), torch.randint(0, 2, (3, 5))
    naive = torch.zeros(3, 4)
    for b in range(3):
        for t in range(4):
            naive[b, t] = sum(_ce(logits[b, t, s].tolist(), int(target[b, s])) for s in range(5)) / 5
    assert torch.allclose(per_tick_cross_entropy(logits, target), naive, atol=1e-5)
    certain = tick_certainty(logits).argmax(dim=1)
    expected = (naive.min(dim=1).values.mean() + naive[torch.arange(3), certain].mean()) / 2
    assert certainty_loss(logits, tick_certainty(logits), target).item() == pytest.approx(
        expected.item(), abs=1e-5
    )


def test_certainty_loss_per_position_picks_ticks_for_each_position() -> None:
    # One example, T=2 ticks, 2 positions, C=2. Position 0 (target 0) is right and sure at tick 0 and
    # wrong and sure at tick 1; position 1 (target 1) is unsure at tick 0 and right and sure at tick 1.
    logits = torch.tensor([[[[3.0, 0.0], [0.0, 0.2]], [[0.0, 4.0], [0.0, 2.0]]]])
    target = torch.tensor([[0, 1]])
    certainty = position_certainty(logits)
    assert certainty.shape == (1, 2, 2)
    assert certainty.argmax(dim=1).tolist() == [[1, 1]]  # position 0: tick 1 (4.0) is surer than tick 0 (3.0)
    ce = [[_ce(logits[0, t, s].tolist(), int(target[0, s])) for s in range(2)] for t in range(2)]
    lowest = [min(ce[0][0], ce[1][0]), min(ce[0][1], ce[1][1])]  # ticks 0 and 1
    certain = [ce[1][0], ce[1][1]]
    expected = (sum(lowest) / 2 + sum(certain) / 2) / 2
    assert certainty_loss(logits, certainty, target).item() == pytest.approx(expected, abs=1e-6)
    # The per-example loss reads both positions at one common tick, so it differs here.
    assert certainty_loss(logits, tick_certainty(logits), target).item() != pytest.approx(expected, abs=1e-3)
    with pytest.raises(ValueError, match="certainty shape"):
        certainty_loss(logits, certainty[..., :1], target)


def test_select_ticks_per_example_and_per_position_match_a_loop() -> None:
    torch.manual_seed(3)
    logits = torch.randn(3, 5, 4, 2)
    per_example = torch.tensor([4, 0, 2])
    per_position = torch.randint(0, 5, (3, 4))
    chosen = select_ticks(logits, per_position)
    for b in range(3):
        assert torch.equal(select_ticks(logits, per_example)[b], logits[b, per_example[b]])
        for s in range(4):
            assert torch.equal(chosen[b, s], logits[b, per_position[b, s], s])


def test_per_tick_cross_entropy_rejects_mismatched_target() -> None:
    with pytest.raises(ValueError, match="target shape"):
        per_tick_cross_entropy(torch.randn(2, 3, 4, 2), torch.zeros(2, 5, dtype=torch.long))


def test_synchronisation_matches_naive_decayed_sum() -> None:
    torch.manual_seed(2)
    sync = Synchronisation(neurons=6, pairs=4, self_pairs=1, seed=3)
    with torch.no_grad():
        sync.decay.copy_(torch.tensor([0.0, 0.5, 2.0, 20.0]))  # 20 is clamped to 15
    posts = torch.randn(5, 2, 6)  # 5 ticks, batch 2
    factor, state = sync.decay_factor(), None
    assert sync.left[0] == sync.right[0]  # the self pair
    rates = sync.decay.detach().clamp(0, 15).tolist()
    for t in range(5):
        got, state = sync.step(posts[t], state, factor)
        got = got.detach()
        for p, rate in enumerate(rates):
            i, j = int(sync.left[p]), int(sync.right[p])
            weights = [math.exp(-rate * (t - s)) for s in range(t + 1)]
            for b in range(2):
                numerator = sum(
                    w * float(posts[s, b, i] * posts[s, b, j]) for s, w in zip(range(t + 1), weights)
                )
                assert float(got[b, p]) == pytest.approx(
                    numerator / math.sqrt(sum(weights)), rel=1e-4, abs=1e-5
                )


def test_decay_is_learnable() -> None:
    sync = Synchronisation(neurons=4, pairs=3).train()
    posts = torch.randn(3, 2, 4)
    factor, state, total = sync.decay_factor(), None, 0.0
    for t in range(3):
        out, state = sync.step(posts[t], state, factor)
        total = total + out.sum()
    total.backward()
    assert sync.decay.grad is not None and sync.decay.grad.abs().sum() > 0


def test_neuron_level_models_are_private_per_neuron() -> None:
    torch.manual_seed(3)
    nlm = NeuronLevelModels(neurons=7, memory_length=4, hidden=3)
    trace = torch.randn(5, 7, 4)
    before = nlm(trace)
    assert before.shape == (5, 7)
    for layer in (0, 1):
        with torch.no_grad():
            nlm.layers[layer].weight[..., 2] += 0.5  # neuron 2's private weights only
        after = nlm(trace)
        changed = (after - before).abs().amax(dim=0) > 1e-6
        assert changed.tolist() == [d == 2 for d in range(7)]
        before = after
    # and a neuron only reads its own history
    trace2 = trace.clone()
    trace2[:, 4] += 1.0
    changed = (nlm(trace2) - nlm(trace)).abs().amax(dim=0) > 1e-6
    assert changed.tolist() == [d == 4 for d in range(7)]


def test_per_neuron_linear_is_the_per_neuron_einsum() -> None:
    torch.manual_seed(4)
    layer = PerNeuronLinear(neurons=6, in_dims=3, out_dims=5)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(4, 6, 3)
    reference = torch.einsum("bdi,iod->bdo", x, layer.weight) + layer.bias
    assert torch.allclose(layer(x), reference, atol=1e-6)


def test_nlm_init_gain_scales_the_initial_weights_and_is_validated() -> None:
    torch.manual_seed(5)
    plain = NeuronLevelModels(neurons=64, memory_length=8, hidden=4)
    torch.manual_seed(5)
    gained = NeuronLevelModels(neurons=64, memory_length=8, hidden=4, init_gain=3.0)
    for a, b in zip(plain.layers, gained.layers):
        assert torch.allclose(b.weight, 3.0 * a.weight)
    trace = torch.randn(16, 64, 8)
    assert gained(trace).std() > 5 * plain(trace).std()  # two GLU layers: the gain acts about squared
    assert small_ctm(nlm_init_gain=3.0).neurons.layers[0].weight.abs().max() > 1.0 / math.sqrt(3 + 8)
    with pytest.raises(ValueError, match="nlm_init_gain"):
        small_ctm(nlm_init_gain=0.0)


def test_perturbing_one_neurons_weights_changes_only_its_post_activation_in_the_ctm() -> None:
    ctm = small_ctm()
    tokens = torch.randn(3, 4, 6)
    before = ctm(tokens).post_activations[:, 0]  # first tick: before the synapse mixes neurons again
    with torch.no_grad():
        ctm.neurons.layers[0].weight[..., 6] += 0.3
    after = ctm(tokens).post_activations[:, 0]
    changed = (after - before).abs().amax(dim=0) > 1e-6
    assert changed.tolist() == [d == 6 for d in range(10)]


def test_padding_tokens_are_ignored() -> None:
    ctm = small_ctm()
    tokens = torch.randn(2, 5, 6)
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
    changed = tokens.clone()
    changed[0, 3:] = 100.0
    a, b = ctm(tokens, mask), ctm(changed, mask)
    assert torch.allclose(a.logits, b.logits, atol=1e-6)
    assert torch.all(a.attention[0, :, 3:] == 0)


@pytest.mark.parametrize("depth", [1, 3])
def test_synapse_models(depth: int) -> None:
    synapse = make_synapse(12, 10, depth)
    assert isinstance(synapse, SynapseMLP if depth == 1 else SynapseUNet)
    assert synapse(torch.randn(4, 12)).shape == (4, 10)
    output = small_ctm(synapse_depth=depth)(torch.randn(2, 3, 6))
    assert output.logits.shape == (2, 4, 5)


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"iterations": 0}, "iterations"),
        ({"heads": 3}, "heads"),
        ({"out_shape": []}, "out_shape"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_arguments_name_the_argument(overrides: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        small_ctm(**overrides)


def test_gradients_reach_every_parameter() -> None:
    ctm = small_ctm().train()
    output = ctm(torch.randn(2, 3, 6))
    certainty_loss(output.logits, output.certainty, torch.tensor([1, 3])).backward()
    missing = [name for name, p in ctm.named_parameters() if p.grad is None]
    assert not missing


def test_an_all_padding_row_stays_finite() -> None:
    output = small_ctm()(torch.randn(2, 3, 6), torch.tensor([[False, False, False], [True, True, False]]))
    assert torch.isfinite(output.logits).all()


def test_decay_init_sets_the_initial_decay_and_is_validated() -> None:
    ctm = small_ctm(action_decay_init=1.0)
    assert torch.all(ctm.sync_action.decay == 1.0) and torch.all(ctm.sync_out.decay == 0.0)
    with pytest.raises(ValueError, match="action_decay_init"):
        small_ctm(action_decay_init=-1.0)
