"""benchmarks/laart_reading_errors.py: misreadings classed by hand, and a run on a tiny generated-data model."""

from __future__ import annotations

import pytest

from laart_lab.recipes import recipe_path
from laart_lab.training_cli import LaartCLI
from tests.benchmark_scripts import load_benchmark
from tests.test_laart import SMALL_GENERATED

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    ("gold", "read", "expected"),
    [
        ("father", "father", "right"),
        ("father", "mother", "gender"),  # parent either way, y's gender wrong
        ("father", "son", "inverse"),  # the child read where the story names the parent: x and y swapped
        ("father", "daughter", "inverse+gender"),
        ("brother", "uncle", "other"),  # a kinship word of another pair
        ("brother", "aunt", "other+gender"),
        ("mother-in-law", "daughter-in-law", "inverse"),
        ("husband", "wife", "gender"),  # spouse is its own inverse: a gender mistake, not a swap
    ],
)
def test_misreadings_are_classed_by_kind_and_gender(gold: str, read: str, expected: str) -> None:
    assert load_benchmark("laart_reading_errors").misreading(gold, read) == expected


def test_the_tally_counts_each_wording_apart_and_orders_the_confusions() -> None:
    errors = load_benchmark("laart_reading_errors")
    edges = [("unseen", "father", "son"), ("unseen", "father", "son"), ("unseen", "sister", "sister"),
             ("seen", "sister", "brother"), ("apart", "aunt", "sister")]  # fmt: skip
    counts, confusions = errors.tally(edges)
    assert counts["unseen"] == {"right": 1, "gender": 0, "inverse": 2, "inverse+gender": 0, "other": 0,
                                "other+gender": 0}  # fmt: skip
    assert counts["seen"]["gender"] == 1 and counts["apart"]["other"] == 1
    assert confusions[0] == ("unseen", "father", "son", 2)
    assert sorted(confusions[1:]) == [("apart", "aunt", "sister", 1), ("seen", "sister", "brother", 1)]
    assert errors.per_relation(edges) == {"father": {"edges": 2, "right": 0}, "sister": {"edges": 2, "right": 1},
                                          "aunt": {"edges": 1, "right": 0}}  # fmt: skip


@pytest.mark.slow
def test_every_gold_edge_of_validation_is_read_and_classed() -> None:
    errors = load_benchmark("laart_reading_errors")
    cli = LaartCLI(["--config", recipe_path("laart_clutrr_generated"), "--trainer.logger", "false", *SMALL_GENERATED],
                   run=False)  # fmt: skip
    edges = errors.read_edges(cli, "val", 0)
    data = cli.datamodule
    expected = sum(len(g) for g in data.gold_edges([e.id for e in data.val_set]))
    assert len(edges) == expected > 0
    assert {w for w, _, _ in edges} <= set(errors.WORDINGS)
    assert {r for _, _, r in edges} <= set(cli.model.relation_names)
