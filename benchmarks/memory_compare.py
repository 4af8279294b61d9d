"""Memory benchmarks (issue 5): long-range recall and Tiny Shakespeare at equal parameters and wall time.

* ``--task recall``: trains ``recipes/recall_kv_memory.yaml`` and ``recipes/recall_baseline.yaml`` for the
  same number of steps and reports ``test/acc`` on the far queries (chance = 1/num_values).
* ``--task shakespeare``: trains ``charlm_baseline_params``, ``charlm_memory`` and ``charlm_concepts`` for
  the same wall time each (``--minutes``) and seed, then validates each on the *whole* validation split
  (stream order, so the kv memory reads earlier windows of the same stream) and reports ``val/bpc``.

Every run goes through the real CLI (``LaartCLI``) with the shipped recipe, only overriding seed, time
and output folders. Writes ``memory_<task>.json`` and a bar chart ``memory_<task>.png`` into ``--out-dir``.
Defaults are small (1 seed, 1 minute per Shakespeare run, 300 recall steps) so ``nox -s bench`` stays
short; the issue's figures used ``--seeds 0 1 2 --minutes 2.5`` and ``--recall-steps 1500``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from laart_lab.training_cli import LaartCLI  # noqa: E402

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
SHAKESPEARE = {"baseline": "charlm_baseline_params", "kv_memory": "charlm_memory", "concept_growth": "charlm_concepts"}
RECALL = {"baseline": "recall_baseline", "kv_memory": "recall_kv_memory"}


def run_recipe(recipe: str, seed: int, out_dir: Path, overrides: list[str], evaluate: str) -> dict[str, Any]:
    """Fit one recipe, then ``evaluate`` ("validate" or "test") on its full split; return the metrics."""
    args = [
        "--config",
        recipe if recipe.endswith(".yaml") else str(RECIPES / f"{recipe}.yaml"),
        "--seed_everything",
        str(seed),
        "--trainer.logger.init_args.save_dir",
        str(out_dir / "runs"),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        *overrides,
    ]
    cli = LaartCLI(args, run=False)
    params = sum(p.numel() for p in cli.model.parameters())
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    train_seconds = time.perf_counter() - start
    cli.trainer.limit_val_batches = 1.0
    run = getattr(cli.trainer, evaluate)
    metrics = run(cli.model, cli.datamodule, verbose=False)[0]
    result = {
        "recipe": recipe,
        "seed": seed,
        "params": params,
        "steps": cli.trainer.global_step,
        "train_seconds": round(train_seconds, 1),
        **{k: float(v) for k, v in metrics.items()},
    }
    memory = getattr(cli.model, "memory", None)
    if memory is not None and hasattr(memory, "num_active"):
        result["concepts"] = memory.num_active
    print(json.dumps(result), flush=True)
    return result


def summarise(results: list[dict[str, Any]], names: dict[str, str], metric: str) -> dict[str, dict[str, float]]:
    summary = {}
    for label, recipe in names.items():
        values = [r[metric] for r in results if r["recipe"] == recipe and metric in r]
        if values:
            summary[label] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "n": len(values),
                "values": values,
            }
    return summary


def plot(summary: dict[str, dict[str, float]], metric: str, path: Path, title: str) -> None:
    labels = list(summary)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(labels, [summary[k]["mean"] for k in labels], yerr=[summary[k]["std"] for k in labels], capsize=4)
    for index, label in enumerate(labels):
        for value in summary[label]["values"]:
            ax.plot(index, value, "k.", alpha=0.6)
    ax.set_ylabel(metric)
    ax.set_title(title)
    if metric.endswith("bpc"):
        low = min(min(s["values"]) for s in summary.values())
        ax.set_ylim(bottom=max(0.0, low - 0.2))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["recall", "shakespeare", "both"], default="both")
    parser.add_argument("--out-dir", default="bench_out")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="wall time per Shakespeare run")
    parser.add_argument("--recall-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=None, help="Shakespeare: equal steps instead of --minutes")
    parser.add_argument("--variants", nargs="+", default=None, help="subset of variants to run")
    parser.add_argument("--recipes", nargs="+", default=None, help="label=recipe (name or .yaml path) to run instead")
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = ["recall", "shakespeare"] if args.task == "both" else [args.task]
    for task in tasks:
        names = RECALL if task == "recall" else SHAKESPEARE
        if args.variants:
            names = {k: v for k, v in names.items() if k in args.variants}
        if args.recipes:
            names = dict(item.split("=", 1) for item in args.recipes)
        results = []
        for seed in args.seeds:
            for recipe in names.values():
                if task == "recall":
                    overrides = ["--trainer.max_steps", str(args.recall_steps)]
                    results.append(run_recipe(recipe, seed, out_dir, overrides, "test"))
                elif args.steps:  # equal optimizer steps instead of equal wall time
                    overrides = ["--trainer.max_steps", str(args.steps), "--trainer.max_time", "null"]
                    overrides += ["--model.init_args.lr_decay_steps", str(args.steps)]
                    overrides += ["--model.init_args.lr_schedule", "steps"]
                    results.append(run_recipe(recipe, seed, out_dir, overrides, "validate"))
                else:
                    seconds = int(args.minutes * 60)
                    overrides = ["--trainer.max_time", f"00:00:{seconds // 60:02d}:{seconds % 60:02d}"]
                    results.append(run_recipe(recipe, seed, out_dir, overrides, "validate"))
        metric = "test/acc" if task == "recall" else "val/bpc"
        summary = summarise(results, names, metric)
        report = {"task": task, "metric": metric, "summary": summary, "runs": results, "args": vars(args)}
        (out_dir / f"memory_{task}.json").write_text(json.dumps(report, indent=2))
        plot(summary, metric, out_dir / f"memory_{task}.png", f"{task}: {metric} (mean ± std over seeds)")
        print(json.dumps({task: summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
