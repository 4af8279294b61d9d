"""Gumbel boxes against hand-computed values and their limits (Dasgupta et al., 2020)."""

from __future__ import annotations

import math

import pytest
import torch

from laart_lab.reasoning.boxes import (
    EULER_GAMMA,
    Box,
    conditional,
    hard_intersection,
    hard_log_volume,
    intersection,
    log_volume,
    side_lengths,
)


def box(lo: list[float], hi: list[float]) -> Box:
    return Box(torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64))


def test_intersection_and_volume_match_hand_computed_values() -> None:
    beta = 0.5
    a, b = box([0.0, 0.0], [2.0, 1.0]), box([1.0, 0.0], [3.0, 1.0])
    inter = intersection(a, b, beta)
    # min corner: beta * log(e^(0/beta) + e^(1/beta)); max corner: -beta * log(e^(-2/beta) + e^(-3/beta))
    assert inter.min[0].item() == pytest.approx(beta * math.log(math.exp(0 / beta) + math.exp(1 / beta)))
    assert inter.min[1].item() == pytest.approx(beta * math.log(2.0))
    assert inter.max[0].item() == pytest.approx(-beta * math.log(math.exp(-2 / beta) + math.exp(-3 / beta)))
    # side: beta * softplus(side / beta - 2 * gamma)
    sides = side_lengths(a, beta)
    assert sides[0].item() == pytest.approx(beta * math.log1p(math.exp(2.0 / beta - 2 * EULER_GAMMA)))
    assert sides[1].item() == pytest.approx(beta * math.log1p(math.exp(1.0 / beta - 2 * EULER_GAMMA)))
    expected = sum(math.log(beta * math.log1p(math.exp(s / beta - 2 * EULER_GAMMA))) for s in (2.0, 1.0))
    assert log_volume(a, beta).item() == pytest.approx(expected)


def test_conditional_is_ratio_of_volumes() -> None:
    beta = 0.2
    a, b = box([0.0, 0.0, 0.0], [1.0, 2.0, 1.5]), box([0.5, 0.2, -1.0], [2.0, 1.0, 1.0])
    ratio = math.exp(log_volume(intersection(a, b, beta), beta).item() - log_volume(b, beta).item())
    assert conditional(a, b, beta).item() == pytest.approx(ratio)


@pytest.mark.parametrize("beta", [1e-2, 1e-3, 1e-4])
def test_small_beta_approaches_hard_boxes(beta: float) -> None:
    a, b = box([0.0, 0.0], [2.0, 1.0]), box([1.0, 0.25], [3.0, 2.0])
    soft, hard = intersection(a, b, beta), hard_intersection(a, b)
    tolerance = 10 * beta
    assert torch.allclose(soft.min, hard.min, atol=tolerance) and torch.allclose(soft.max, hard.max, atol=tolerance)
    # hard intersection is [1, 2] x [0.25, 1]: volume 0.75
    assert math.exp(log_volume(soft, beta).item()) == pytest.approx(0.75, abs=20 * beta)
    assert log_volume(a, beta).item() == pytest.approx(hard_log_volume(a).item(), abs=20 * beta)


def test_self_containment_is_about_one_and_disjoint_is_about_zero() -> None:
    beta = 1e-3
    a = box([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    assert conditional(a, a, beta).item() == pytest.approx(1.0, abs=0.01)
    far = box([2.0, 0.0, 0.0], [3.0, 1.0, 1.0])
    assert conditional(a, far, beta).item() < 1e-6
    inside = box([0.25, 0.25, 0.25], [0.75, 0.75, 0.75])
    assert conditional(a, inside, beta).item() == pytest.approx(1.0, abs=0.01)  # inside ⊂ a: P(a | inside) ≈ 1
    assert conditional(inside, a, beta).item() == pytest.approx(0.125, abs=0.01)  # P(inside | a) = 0.5^3


def test_gradients_flow_where_hard_boxes_are_disjoint() -> None:
    lo = torch.tensor([2.0, 0.0], requires_grad=True)
    a, b = box([0.0, 0.0], [1.0, 1.0]), Box(lo, lo + 1.0)
    conditional(a, b, beta=0.5).backward()
    assert lo.grad is not None and lo.grad[0].item() < 0  # moving b towards a increases P(a | b)


def test_bad_beta_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="beta"):
        log_volume(box([0.0], [1.0]), beta=0.0)
