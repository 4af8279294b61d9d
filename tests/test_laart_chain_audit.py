"""benchmarks/laart_chain_audit.py: per-story flags by hand, and a run on a tiny generated-data model."""

from __future__ import annotations

import math

import pytest

from laart_lab.recipes import recipe_path
from laart_lab.training_cli import LaartCLI
from tests.benchmark_scripts import load_benchmark
from tests.test_laart import SMALL_GENERATED

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_story_is_flagged_by_hand() -> None:
    audit = load_benchmark("laart_chain_audit")
    gold = [(0, 1, "son"), (2, 1, "sister")]  # entity 0's son is 1; 2's sister is 1
    read = {(0, 1): "son", (2, 1): "sister", (0, 2): "grandson"}
    on_gold = audit.audit_story([0, 1, 2], gold, read, slow_right=True)  # 1 -> 2 walks (2, 1) backwards: on gold
    assert on_gold == {
        "edges_all_right": True,
        "chain_on_gold": True,
        "gold_chain_read_right": True,
        "slow_right": True,
    }
    shortcut = audit.audit_story([0, 2], gold, read, slow_right=False)
    assert shortcut == {
        "edges_all_right": True,
        "chain_on_gold": False,
        "gold_chain_read_right": False,
        "slow_right": False,
    }
    misread = audit.audit_story([0, 1, 2], gold, {**read, (2, 1): "brother"}, slow_right=False)
    assert misread["edges_all_right"] is False and misread["chain_on_gold"] is True
    assert misread["gold_chain_read_right"] is False
    rates = audit.rates([on_gold, shortcut, misread])
    assert rates["edges_all_right"] == pytest.approx(2 / 3) and rates["chain_on_gold"] == pytest.approx(2 / 3)
    assert rates["chain_on_gold | edges_all_right"] == pytest.approx(1 / 2)
    assert rates["slow_right | edges_all_right"] == pytest.approx(1 / 2)
    assert rates["slow_right | chain_on_gold"] == pytest.approx(1 / 2)
    assert rates["slow_right | gold_chain_read_right"] == pytest.approx(1.0)  # only on_gold qualifies
    assert math.isnan(audit.rates([shortcut])["slow_right | chain_on_gold"])


@pytest.mark.slow
def test_the_audit_scores_every_validation_story_for_each_step_cost() -> None:
    audit = load_benchmark("laart_chain_audit")
    cli = LaartCLI(["--config", recipe_path("laart_clutrr_generated"), "--trainer.logger", "false", *SMALL_GENERATED],
                   run=False)  # fmt: skip
    results = audit.audit(cli, "val", 0, [0.05, 0.0])
    assert list(results) == ["step_cost=0.05", "step_cost=0"]
    for values in results.values():
        assert values["stories"] == len(cli.datamodule.val_set)
        assert all(0.0 <= v <= 1.0 for k, v in values.items() if k != "stories" and not math.isnan(v))
