"""Checkpoints written before the structure refactor (issue 13) still load and validate identically.

The fixtures in ``tests/fixtures/checkpoints`` were written by laart_lab at commit ac61601 with
``make_fixtures.py`` (one per model family: classifier, CharLM with softmax / linear attention, with
concept growth and kv memory, RelationReasoning with each reasoner, LAART, the CTM plugin's ParityCTM).
Each is validated through the same CLI path a user takes (``laart-lab validate --config <recipe>
--ckpt_path <file>``) and must reproduce the metrics recorded when it was written. Where a shipped recipe
has since changed a setting the reader was trained with, the case's arguments pin the old value, as the
refusal a user gets names (e.g. ``laart_slrm``: ``--model.init_args.chain_search related``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from laart_lab.paths import data_path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"
EXPECTED: dict[str, dict] = json.loads((FIXTURES / "expected.json").read_text())
NEEDS_SHAKESPEARE = {"charlm_linear", "charlm_concepts"}


def validate_metrics(validate_args: list[str], checkpoint: Path, log_dir: Path) -> dict[str, float]:
    """``laart-lab validate ARGS --ckpt_path checkpoint`` in this process; the metrics it logged."""
    from laart_lab.recipes import resolve_recipe
    from laart_lab.training_cli import LaartCLI

    subcommand, config_flag, recipe, *rest = validate_args
    recipe_path = resolve_recipe(recipe)
    assert config_flag == "--config" and recipe_path is not None, f"no shipped recipe {recipe!r}"
    log_args = ["--trainer.logger.init_args.save_dir", str(log_dir)]
    cli = LaartCLI(args=[subcommand, "--config", str(recipe_path), *rest, *log_args, "--ckpt_path", str(checkpoint)])
    return {key: float(value) for key, value in sorted(cli.trainer.callback_metrics.items())}


def _shakespeare_present() -> bool:
    return data_path("tinyshakespeare", "input.txt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_old_checkpoint_validates_as_when_it_was_written(name: str, tmp_path: Path, one_thread: None) -> None:
    if name in NEEDS_SHAKESPEARE and not _shakespeare_present():
        pytest.skip("needs Tiny Shakespeare under $LAART_LAB_DATA")
    if name.endswith("ctm"):
        pytest.importorskip("laart_ctm", reason="the laart-ctm plugin is not installed")
    case = EXPECTED[name]
    got = validate_metrics(case["args"], FIXTURES / f"{name}.ckpt", tmp_path)
    want = case["metrics"]
    assert set(want) <= set(got), f"metrics no longer logged: {sorted(set(want) - set(got))}"
    for key, value in want.items():
        assert math.isclose(got[key], value, rel_tol=1e-4, abs_tol=1e-5), f"{name} {key}: {got[key]} != {value}"


def test_every_model_family_has_a_fixture() -> None:
    assert {"classifier_softmax", "charlm_linear", "reasoning_slrm", "laart_slrm", "parity_ctm"} <= set(EXPECTED)
    for name in EXPECTED:
        assert (FIXTURES / f"{name}.ckpt").is_file(), name
