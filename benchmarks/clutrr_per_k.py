"""Per-k CLUTRR accuracy of reasoner recipes over several seeds (model chosen on validation only).

For each recipe and seed: build everything from the recipe exactly as ``laart-lab fit`` does
(``LaartCLI(run=False)`` with ``--seed_everything``/``--data.init_args.seed`` overrides), fit, then
test the checkpoint that ModelCheckpoint selected on ``val/acc`` (``ckpt_path="best"``). Prints one
mean ± std table per recipe and writes everything to ``--json``.

    flock /tmp/laart_cpu.lock python benchmarks/clutrr_per_k.py --recipes clutrr_slrm clutrr_gru --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/recipe_runs.py, also when loaded by path
from recipe_runs import fit_then_test  # noqa: E402


def run(recipe: str, seed: int, out_dir: str, extra: list[str]) -> dict:
    cli, facts = fit_then_test(recipe, seed, out_dir, extra)
    return {**facts, "test": dict(cli.model.last_test_table)}


def summarise(results: list[dict]) -> str:
    ks = sorted({k for r in results for k in r["test"]})
    lines = [f"{'k':>6}  mean ± std over {len(results)} seeds"]
    for k in ks:
        values = [r["test"][k] for r in results]
        lines.append(f"{k:>6}  {statistics.mean(values):.4f} ± {statistics.pstdev(values):.4f}")
    for label, subset in (("mean", ks), ("k4-10", [k for k in ks if 4 <= k <= 10])):
        if not subset:  # e.g. no test file with k >= 4
            lines.append(f"{label:>6}  n/a")
            continue
        values = [statistics.mean(r["test"][k] for k in subset) for r in results]
        lines.append(f"{label:>6}  {statistics.mean(values):.4f} ± {statistics.pstdev(values):.4f}")
    fit = [r["fit_seconds"] for r in results]
    epochs = [r["epochs"] for r in results]
    lines.append(f"fit time {statistics.mean(fit):.1f} s ± {statistics.pstdev(fit):.1f} (epochs {epochs})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["clutrr_slrm"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out-dir", default="bench_out/clutrr_runs")
    parser.add_argument("--json", default="bench_out/clutrr_per_k.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("extra", nargs="*", help="extra CLI overrides after --, e.g. --trainer.max_epochs 3")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    all_results = []
    for recipe in args.recipes:
        results = [run(recipe, seed, args.out_dir, args.extra) for seed in args.seeds]
        all_results += results
        print(f"\n=== {recipe} ===\n{summarise(results)}", flush=True)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(all_results, handle, indent=1)


if __name__ == "__main__":
    main()
