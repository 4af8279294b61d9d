"""Choosing the SLRM's ``unattested_penalty`` on validation only: val/acc and test accuracy over a grid.

``unattested_penalty`` is an evaluation-time setting of the SLRM (a log-penalty on *named* results of
relation pairs that training never showed as a whole two-relation path). This script takes the fitted
checkpoints that ``benchmarks/clutrr_per_k.py`` wrote (``<runs>/<recipe>/seed<S>/checkpoints``, the one
ModelCheckpoint kept on ``val/acc``), rebuilds each model from its recipe, and for every penalty in the
grid reports the validation accuracy (the held-out split of the *training* file, k=2,3) and the test
accuracy per k. The penalty a user would pick is the best on validation (ties: the smallest value);
the table prints its test score next to penalty 0, so one can check that the choice did not need the
test files. Writes ``--json`` and a plot (val and test k=4..10 against the penalty, one line per seed).

    python benchmarks/slrm_penalty.py --recipe clutrr_slrm --seeds 0 1 2 --out-dir bench_out/clutrr_runs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from laart_lab.recipes import recipe_path  # noqa: E402
from laart_lab.training_cli import LaartCLI  # noqa: E402

GRID = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 1e6)


def accuracy(model: torch.nn.Module, loader: DataLoader) -> float:
    correct = total = 0
    with torch.no_grad():
        for batch in loader:
            predicted = model(batch).logits.argmax(-1)
            correct += int((predicted == batch.target).sum())
            total += len(batch.target)
    return correct / max(total, 1)


def best_checkpoint(runs: Path, recipe: str, seed: int) -> Path:
    folder = runs / recipe / f"seed{seed}" / "checkpoints"
    chosen = sorted(p for p in folder.glob("*.ckpt") if p.name != "last.ckpt")
    if not chosen:
        raise SystemExit(
            f"no val-selected checkpoint in {folder}: run `python benchmarks/clutrr_per_k.py --recipes {recipe} "
            f"--seeds {seed} --out-dir {runs}` first"
        )
    return chosen[-1]


def sweep(recipe: str, seed: int, runs: Path, grid: tuple[float, ...]) -> list[dict]:
    cli = LaartCLI(["--config", recipe_path(recipe), "--data.init_args.seed", str(seed)], run=False)
    model, data = cli.model, cli.datamodule
    checkpoint = best_checkpoint(runs, recipe, seed)
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"])
    model.eval()
    data.setup("fit")
    data.setup("test")
    rows = []
    for penalty in grid:
        model.reasoner.unattested_penalty = penalty
        test = {k: accuracy(model, loader) for k, loader in zip(data.test_ks, data.test_dataloader(), strict=True)}
        long_ks = [k for k in test if 4 <= k <= 10]
        rows.append(
            {
                "seed": seed,
                "checkpoint": str(checkpoint),
                "penalty": penalty,
                "val_acc": accuracy(model, data.val_dataloader()),
                "test": test,
                "test_k4_10": sum(test[k] for k in long_ks) / max(len(long_ks), 1),
            }
        )
        print(
            f"seed {seed}  penalty {penalty:>9g}  val/acc {rows[-1]['val_acc']:.4f}  "
            f"test k4-10 {rows[-1]['test_k4_10']:.4f}  k10 {test.get(10, float('nan')):.4f}",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="clutrr_slrm")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out-dir", default="bench_out/clutrr_runs", help="the --out-dir given to clutrr_per_k.py")
    parser.add_argument("--grid", default=",".join(f"{p:g}" for p in GRID), help="comma-separated penalties")
    parser.add_argument("--json", default="bench_out/slrm_penalty.json")
    parser.add_argument("--plot", default="bench_out/slrm_penalty.png")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    grid = tuple(float(p) for p in args.grid.split(","))
    rows = [row for seed in args.seeds for row in sweep(args.recipe, seed, Path(args.out_dir), grid)]

    print(f"\n{'seed':>4}  {'val-chosen':>10}  {'val/acc':>7}  {'test k4-10':>10}  | penalty 0: val/acc, test k4-10")
    chosen_rows = []
    for seed in args.seeds:
        mine = [r for r in rows if r["seed"] == seed]
        chosen = max(mine, key=lambda r: (r["val_acc"], -r["penalty"]))  # best on validation, then smallest
        zero = next(r for r in mine if r["penalty"] == 0.0) if 0.0 in grid else None
        chosen_rows.append(chosen)
        tail = f"{zero['val_acc']:.4f}, {zero['test_k4_10']:.4f}" if zero else "-"
        print(f"{seed:>4}  {chosen['penalty']:>10g}  {chosen['val_acc']:.4f}  {chosen['test_k4_10']:>10.4f}  | {tail}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"recipe": args.recipe, "rows": rows, "chosen": chosen_rows}, indent=1))

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for seed in args.seeds:
        mine = [r for r in rows if r["seed"] == seed]
        xs = [max(r["penalty"], 0.1) for r in mine]  # 0 drawn at 0.1 on the log axis
        axes[0].plot(xs, [r["val_acc"] for r in mine], marker="o", label=f"seed {seed}")
        axes[1].plot(xs, [r["test_k4_10"] for r in mine], marker="o", label=f"seed {seed}")
    for axis, title in zip(axes, ("val/acc (train-file hold-out, k=2,3)", "test accuracy, mean k=4..10"), strict=True):
        axis.set_xscale("log")
        axis.set_xlabel("unattested_penalty (0 drawn at 0.1)")
        axis.set_title(title)
        axis.legend()
    figure.tight_layout()
    figure.savefig(args.plot, dpi=120)
    print(f"wrote {args.json} and {args.plot}")


if __name__ == "__main__":
    main()
