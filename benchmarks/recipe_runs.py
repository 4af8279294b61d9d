"""One recipe run for the CLUTRR benchmarks: fit a shipped recipe with a seed, then test its best checkpoint.

The run's facts name the checkpoint chosen on validation, so it can be tested later by another process
(``laart_clutrr.py --test-validated``) after a decision made on validation alone.

Shared by ``clutrr_per_k.py`` and ``laart_clutrr.py`` (imported as a sibling module: the scripts run
from this folder). The run goes through ``LaartCLI`` exactly as ``laart-lab fit`` would. The LAART diagnostics
(``laart_chain_audit.py``, ``laart_reading_errors.py``) read a trained checkpoint through :func:`checkpoint_cli`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch

from laart_lab.checkpoints import read_checkpoint
from laart_lab.recipes import recipe_path
from laart_lab.training_cli import LaartCLI


def recipe_cli(recipe: str, seed: int, out_dir: str, extra: list[str], seed_data: bool = True) -> LaartCLI:
    """``LaartCLI`` built from ``recipe`` with a seed, logs under ``out_dir/<recipe name>/seed<seed>``, not run.

    ``extra``: command-line overrides; ``seed_data`` also passes the seed to the data module (its train/val
    split). Building it again with the same arguments gives the same data and model, so a run's checkpoint can
    be evaluated later by a second process.
    """
    args = [
        "--config", recipe_path(recipe),
        "--seed_everything", str(seed),
        *(["--data.init_args.seed", str(seed)] if seed_data else []),
        "--trainer.logger.init_args.save_dir", out_dir,
        "--trainer.logger.init_args.version", f"seed{seed}",
        "--trainer.enable_progress_bar", "false",
        *extra,
    ]  # fmt: skip
    return LaartCLI(args, run=False)


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a diagnostic that reads one checkpoint on one split (:func:`checkpoint_cli` takes three)."""
    parser.add_argument("--ckpt", required=True, help="a LaartModel checkpoint (read with weights_only)")
    parser.add_argument("--recipe", default="laart_clutrr", help="builds the data and the model the weights fill")
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--min-k", type=int, default=0, help="only stories with at least this k")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", default="bench_out")
    parser.add_argument("extra", nargs="*", help="CLI overrides after --, as the checkpoint was trained with")


def split_batches(data: Any, split: str) -> list[Any]:
    """Every evaluation batch of ``split`` (``"val"`` or ``"test"``, all its dataloaders), the data set up for it."""
    data.setup("fit" if split == "val" else "test")
    loaders = data.val_dataloader() if split == "val" else data.test_dataloader()
    return [batch for loader in (loaders if isinstance(loaders, list) else [loaders]) for batch in loader]


def checkpoint_cli_from(args: argparse.Namespace) -> LaartCLI:
    """:func:`checkpoint_cli` for the arguments of :func:`add_checkpoint_arguments`, with torch's threads set."""
    torch.set_num_threads(args.threads)
    return checkpoint_cli(args.recipe, args.ckpt, args.extra)


def checkpoint_cli(recipe: str, ckpt: str, extra: list[str]) -> LaartCLI:
    """``LaartCLI`` built from ``recipe`` and ``extra`` (the overrides the checkpoint was trained with), its model
    filled with the checkpoint's weights (read with ``weights_only``), not run. Weights trained to be read another
    way are refused with the fix named (``LaartModel.on_load_checkpoint``)."""
    cli = LaartCLI(["--config", recipe_path(recipe), "--trainer.logger", "false", *extra], run=False)
    checkpoint: dict[str, Any] = read_checkpoint(ckpt)
    cli.model.on_load_checkpoint(checkpoint)
    cli.model.load_state_dict(checkpoint["state_dict"])
    return cli


def fit_then_test(
    recipe: str,
    seed: int,
    out_dir: str,
    extra: list[str],
    seed_data: bool = True,
    before_test: Callable[[LaartCLI], None] | None = None,
    test: bool = True,
) -> tuple[LaartCLI, dict[str, Any]]:
    """Fit ``recipe`` (``extra``: command-line overrides), test the checkpoint chosen on validation.

    ``seed_data`` as in :func:`recipe_cli`. ``before_test`` is called after the fit, before any test (e.g. to
    validate the chosen checkpoint); ``test=False`` stops there, so that a candidate can be judged on
    validation with no test figure printed or kept. Returns the CLI (its model holds the test tables) and
    the run's common facts: recipe, seed, fit seconds, epochs, steps, the best validation score and the
    checkpoint that has it.
    """
    cli = recipe_cli(recipe, seed, out_dir, extra, seed_data)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    fit_seconds = time.perf_counter() - start
    if before_test is not None:
        before_test(cli)
    if test:
        cli.trainer.test(cli.model, cli.datamodule, ckpt_path="best", verbose=False)
    best = cli.trainer.checkpoint_callback.best_model_score
    return cli, {
        "recipe": recipe,
        "seed": seed,
        "fit_seconds": fit_seconds,
        "epochs": cli.trainer.current_epoch,
        "steps": cli.trainer.global_step,
        "best_val_acc": float(best) if best is not None else None,
        "best_checkpoint": cli.trainer.checkpoint_callback.best_model_path,
    }
