"""Continual learning (issue 16): does concept growth earn its place when the data changes in stages?

Two streams, every arm with the same code, data and step budget, seeds side by side in one invocation:

* ``kinship``: the SLRM on generated CLUTRR-like kinship queries whose relations arrive in stages
  (``recipes/continual_kinship_slrm*.yaml``: blood relations, then in-laws, then spouses; test stories of
  stage i mix old relations with new ones). Metric: accuracy.
* ``text``: a byte-level ``CharLM`` on Tiny Shakespeare -> Python source (26 standard-library modules of
  the running interpreter, listed in the JSON) -> Tiny Shakespeare (``recipes/continual_text_*.yaml``).
  Metric: bits per byte (bpc; lower is better).

Arms: ``finetune`` (fixed capacity), ``growth`` (concepts grown and consolidated), ``growth_nothink``
(grown, never consolidated), ``replay`` (fixed capacity + a small replay buffer), ``growth_replay``, and
for the text stream ``kv_memory``. Each run goes through the real CLI (``LaartCLI``) with the shipped
recipe (an arm changes only the recipe keys it names, see ``ARMS``); the ``continual_matrix`` callback
evaluates every task's validation and test sets after every stage. Metrics (``laart_lab.continual_metrics``):
final average, forgetting, backward / forward transfer, learning; plus parameters (total and added by
growth) and wall time. Nothing here is tuned on test: every arm's settings are the recipes', and the
JSON holds the validation matrices next to the test ones.

Runs go two at a time (``--jobs``, one thread each); with ``--lock PATH`` each pair holds that flock
only while it runs (``--lock-hold S``: further pairs too, while the whole hold would stay under S seconds),
so the machine's shared CPU lock is never held long. Per-run JSON goes to
``<work-dir>/continual_runs/`` (TensorBoard logs: ``<work-dir>/continual_tb/``) and finished runs are
not repeated when the command is run again.

    python benchmarks/continual.py --seeds 0 1 2 --lock /tmp/laart_cpu.lock --out-dir benchmarks/results \\
        --work-dir /tmp/continual
    python benchmarks/continual.py --smoke            # seconds: tiny stages, one seed (the test suite runs it)
"""

from __future__ import annotations

import argparse
import copy
import fcntl
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
STREAMS = ("kinship", "text")
METRIC_KEYS = (
    "final_average",
    "forgetting",
    "backward_transfer",
    "interim_forgetting",
    "forward_transfer",
    "learning",
)

# arm -> (recipe, edits): an edit is (dotted key, value); ("callbacks", name, key) edits a callback's init_args
ARMS: dict[str, dict[str, tuple[str, list[tuple[Any, Any]]]]] = {
    "kinship": {
        "finetune": ("continual_kinship_slrm", []),
        "growth": ("continual_kinship_slrm_growth", []),
        "growth_nothink": ("continual_kinship_slrm_growth", [(("callbacks", "stage_concept_growth", "think"), False)]),
        "replay": ("continual_kinship_slrm", [("data.init_args.replay", 0.1)]),
        "growth_replay": ("continual_kinship_slrm_growth", [("data.init_args.replay", 0.1)]),
    },
    "text": {
        "finetune": ("continual_text_charlm", []),
        "growth": ("continual_text_concepts", []),
        "growth_nothink": ("continual_text_concepts", [(("callbacks", "concept_growth", "think_every"), 0)]),
        "replay": ("continual_text_charlm", [("data.init_args.replay", 0.125)]),
        "growth_replay": ("continual_text_concepts", [("data.init_args.replay", 0.125)]),
        "kv_memory": ("continual_text_kv_memory", []),
    },
}
# smoke mode: tiny stages (seconds per run); the same code paths
SMOKE = {
    "kinship": [
        ("data.init_args.stage_epochs", [1, 1, 1]),
        ("trainer.max_epochs", 3),
        ("data.init_args.generated_train_rows", 1500),
        ("data.init_args.generated_test_rows", 150),
        ("data.init_args.max_train_per_stage", 60),
        ("data.init_args.max_test_per_stage", 30),
        ("data.init_args.replay_buffer", 10),
        ("model.init_args.reasoner.init_args.dim", 8),
        ("model.init_args.reasoner.init_args.hidden", 16),
    ],
    "text": [
        ("data.init_args.steps_per_epoch", 3),
        ("data.init_args.eval_tokens", 1024),
        ("data.init_args.batch_size", 8),
        ("data.init_args.eval_batch_size", 8),
        ("data.init_args.block_size", 32),
        ("data.init_args.replay_buffer", 8),
        ("model.init_args.d_model", 32),
        ("model.init_args.n_layers", 1),
        ("model.init_args.warmup_steps", 2),
    ],
}


# ------------------------------------------------------------------------------------------------
# recipes
# ------------------------------------------------------------------------------------------------
def edited_recipe(recipe: str, edits: list[tuple[Any, Any]]) -> dict[str, Any]:
    """The recipe's YAML with ``edits`` applied (dotted keys; callback edits by registered name)."""
    config = yaml.safe_load((RECIPES / f"{recipe}.yaml").read_text())
    config = copy.deepcopy(config)
    for key, value in edits:
        if isinstance(key, tuple):
            _, name, arg = key
            matches = [c for c in config["trainer"]["callbacks"] if c.get("class_path") == name]
            if not matches:
                raise KeyError(f"recipe {recipe} has no callback {name!r} to edit")
            matches[0].setdefault("init_args", {})[arg] = value
            continue
        node = config
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return config


# ------------------------------------------------------------------------------------------------
# one run (in a worker process)
# ------------------------------------------------------------------------------------------------
def _concept_params(model: Any) -> int:
    """Parameters of one concept: a concept layer's key + value rows, or an SLRM box's two corners."""
    from laart_lab.memory.concept_growth import ConceptLayer

    for module in model.modules():
        if isinstance(module, ConceptLayer):
            return 2 * module.d_model
        if getattr(module, "concept_active", None) is not None:
            return 2 * module.dim
    return 0


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Fit one arm and seed through the CLI; return its matrix, metrics, parameters and wall time."""
    import torch

    torch.set_num_threads(job["threads"])
    from laart_lab.callbacks.continual import ContinualMatrix
    from laart_lab.training_cli import LaartCLI

    config = edited_recipe(job["recipe"], job["edits"])
    out_dir = Path(job["work_dir"])
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, dir=out_dir) as handle:
        yaml.safe_dump(config, handle)
        recipe_path = handle.name
    args = [
        "--config", recipe_path,
        "--seed_everything", str(job["seed"]),
        "--trainer.logger.init_args.save_dir", str(out_dir / "continual_tb"),
        "--trainer.logger.init_args.name", f"{job['stream']}_{job['arm']}",
        "--trainer.logger.init_args.version", f"seed{job['seed']}",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.limit_val_batches", "0",
    ]  # fmt: skip
    try:
        cli = LaartCLI(args, run=False)
    finally:
        os.unlink(recipe_path)
    model, datamodule = cli.model, cli.datamodule
    params = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    cli.trainer.fit(model, datamodule)
    wall = time.perf_counter() - start
    matrix = next(c for c in cli.trainer.callbacks if isinstance(c, ContinualMatrix)).result
    concepts = [s["concepts"] for s in matrix["stages"]]
    per_concept = _concept_params(model)
    initial_concepts = None
    if concepts[0] is not None:  # concepts active before the first growth: the recipe's initial count
        initial_concepts = _initial_concepts(config)
    result = {
        "stream": job["stream"],
        "arm": job["arm"],
        "seed": job["seed"],
        "recipe": job["recipe"],
        "edits": [[list(k) if isinstance(k, tuple) else k, v] for k, v in job["edits"]],
        "params": params,
        "concepts_per_stage": concepts,
        "concepts_initial": initial_concepts,
        "params_added": (
            max(0, (concepts[-1] - initial_concepts)) * per_concept if initial_concepts is not None else 0
        ),
        "params_added_peak": (
            max(0, max(concepts) - initial_concepts) * per_concept if initial_concepts is not None else 0
        ),
        "params_active_concepts_end": (concepts[-1] or 0) * per_concept,
        "params_per_concept": per_concept,
        "wall_seconds": round(wall, 1),
        "steps": cli.trainer.global_step,
        "data": datamodule.describe(),
        **matrix,
    }
    path = out_dir / "continual_runs" / f"{job['stream']}_{job['arm']}_seed{job['seed']}{job['tag']}.json"
    path.write_text(json.dumps(result, indent=1))
    print(
        f"[{job['stream']}/{job['arm']}/seed{job['seed']}] test {result['metric']} final "
        f"{result['metrics']['test']['final_average']:.4f}, forgetting {result['metrics']['test']['forgetting']}, "
        f"{wall:.0f} s",
        flush=True,
    )
    return result


def _initial_concepts(config: dict[str, Any]) -> int | None:
    model = config["model"]["init_args"]
    memory = model.get("memory") or {}
    if memory.get("class_path") == "concept_growth":
        return int(memory.get("init_args", {}).get("initial", 8))
    reasoner = model.get("reasoner", {}).get("init_args", {})
    if reasoner.get("initial_concepts") is not None:
        return int(reasoner["initial_concepts"])
    return None


# ------------------------------------------------------------------------------------------------
# summary, targets, plot
# ------------------------------------------------------------------------------------------------
def _mean_std(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def summarise(results: list[dict[str, Any]], split: str = "test") -> dict[str, dict[str, Any]]:
    """Per arm: mean ± std over seeds of every metric, parameters, wall time, and the mean matrix."""
    summary: dict[str, dict[str, Any]] = {}
    for arm in dict.fromkeys(r["arm"] for r in results):
        runs = [r for r in results if r["arm"] == arm]
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in runs]}
        for key in METRIC_KEYS:
            values = [r["metrics"][split][key] for r in runs if r["metrics"][split][key] is not None]
            if values:
                entry[key] = _mean_std(values)
        for key in ("params", "params_added", "params_added_peak", "wall_seconds"):
            entry[key] = _mean_std([float(r[key]) for r in runs])
        rows = len(runs[0]["matrix"][split])
        cols = len(runs[0]["matrix"][split][0])
        entry["matrix_mean"] = [
            [statistics.fmean(r["matrix"][split][i][j] for r in runs) for j in range(cols)] for i in range(rows)
        ]
        entry["concepts_per_stage"] = [r["concepts_per_stage"] for r in runs]
        entry["grown_merged_retired_per_stage"] = [
            [[s["grown"], s["merges"], s["retired"]] for s in r["stages"]] for r in runs
        ]
        summary[arm] = entry
    return summary


def targets(summary: dict[str, dict[str, Any]], higher_is_better: bool) -> dict[str, Any]:
    """The issue's target for ``growth``: forgetting at most half of fine-tuning's, final average as good."""
    if "growth" not in summary or "finetune" not in summary:
        return {}
    out: dict[str, Any] = {}
    for measure in ("forgetting", "interim_forgetting"):
        if measure not in summary["finetune"] or measure not in summary["growth"]:
            continue
        ft, gr = summary["finetune"][measure]["mean"], summary["growth"][measure]["mean"]
        out[f"{measure}_finetune"], out[f"{measure}_growth"] = ft, gr
        out[f"{measure}_at_most_half"] = (gr <= 0.5 * ft) if ft > 0 else None  # None: fine-tuning forgot nothing
    ft_final = summary["finetune"]["final_average"]["mean"]
    gr_final = summary["growth"]["final_average"]["mean"]
    out["final_average_finetune"], out["final_average_growth"] = ft_final, gr_final
    out["final_average_as_good"] = gr_final >= ft_final if higher_is_better else gr_final <= ft_final
    return out


def plot(stream: str, results: list[dict[str, Any]], summary: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(summary)
    metric = results[0]["metric"]
    tasks = results[0]["task_names"]
    fig, axes = plt.subplots(2, len(arms), figsize=(2.7 * len(arms), 5.6), squeeze=False)
    cmap = "viridis" if metric == "acc" else "viridis_r"
    values = [v for a in arms for row in summary[a]["matrix_mean"] for v in row]
    for index, arm in enumerate(arms):
        ax = axes[0][index]
        matrix = summary[arm]["matrix_mean"]
        ax.imshow(matrix, cmap=cmap, vmin=min(values), vmax=max(values), aspect="auto")
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_title(arm, fontsize=9)
        ax.set_xticks(range(len(tasks)), [t.split(":")[0][:12] for t in tasks], fontsize=7, rotation=20)
        ax.set_yticks(range(len(matrix)), [f"after {i + 1}" for i in range(len(matrix))], fontsize=7)
    for index, key in enumerate(("final_average", "forgetting", "interim_forgetting")):
        if index >= len(arms):
            break
        ax = axes[1][index]
        present = [a for a in arms if key in summary[a]]
        ax.bar(range(len(present)), [summary[a][key]["mean"] for a in present],
               yerr=[summary[a][key]["std"] for a in present], capsize=3)  # fmt: skip
        for i, arm in enumerate(present):
            ax.plot([i] * len(summary[arm][key]["values"]), summary[arm][key]["values"], "k.", alpha=0.6)
        ax.set_xticks(range(len(present)), present, fontsize=7, rotation=35)
        ax.set_title(f"test {key} ({metric})", fontsize=9)
    for index in range(3, len(arms)):
        axes[1][index].axis("off")
    seeds = sorted({r["seed"] for r in results})
    fig.suptitle(
        f"continual {stream}: test {metric} matrix (row = after stage, col = task), seeds {seeds}", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_table(stream: str, summary: dict[str, dict[str, Any]], metric: str) -> str:
    lines = [f"continual {stream} (test {metric}; mean ± std over seeds)"]
    header = f"{'arm':<16}" + "".join(f"{k[:14]:>17}" for k in METRIC_KEYS) + f"{'+params':>10}{'wall s':>9}"
    lines.append(header)
    for arm, entry in summary.items():
        cells = ""
        for key in METRIC_KEYS:
            cells += f"{entry[key]['mean']:>9.4f}±{entry[key]['std']:<7.4f}" if key in entry else f"{'n/a':>17}"
        cells += f"{entry['params_added']['mean']:>10.0f}{entry['wall_seconds']['mean']:>9.1f}"
        lines.append(f"{arm:<16}{cells}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------------
@contextmanager
def cpu_lock(path: str | None):
    """Hold ``path``'s flock (the machine's shared CPU lock) for the duration; nothing without a path."""
    if not path:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", nargs="+", choices=STREAMS, default=list(STREAMS))
    parser.add_argument("--arms", nargs="+", default=None, help="subset of arms (default: every arm of the stream)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out-dir", default="bench_out", help="summary JSON + PNG per stream")
    parser.add_argument(
        "--work-dir",
        default=None,
        help="per-run JSON (continual_runs/) and TensorBoard logs (continual_tb/); default --out-dir",
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side (one thread each)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--lock", default=None, help="flock file held while each group of --jobs runs trains")
    parser.add_argument(
        "--lock-hold",
        type=float,
        default=0.0,
        help="keep the lock for the next group while the whole hold would stay under this many seconds",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny stages, for a quick check of every code path")
    parser.add_argument("--rerun", action="store_true", help="repeat runs whose JSON already exists")
    parser.add_argument(
        "--summary-only", action="store_true", help="train nothing: summarise the per-run JSON already in --work-dir"
    )
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir)
    work_dir = Path(args.work_dir or args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "continual_runs").mkdir(parents=True, exist_ok=True)
    tag = "_smoke" if args.smoke else ""
    jobs: list[dict[str, Any]] = []
    for stream in args.streams:
        arms = args.arms or list(ARMS[stream])
        unknown = [a for a in arms if a not in ARMS[stream]]
        if unknown:
            parser.error(f"unknown arm(s) {unknown} for stream {stream}; choose from {list(ARMS[stream])}")
        for seed in args.seeds:
            for arm in arms:
                recipe, edits = ARMS[stream][arm]
                jobs.append({
                    "stream": stream, "arm": arm, "seed": seed, "recipe": recipe,
                    "edits": (SMOKE[stream] if args.smoke else []) + edits, "work_dir": str(work_dir),
                    "threads": args.threads, "tag": tag,
                })  # fmt: skip
    done: list[dict[str, Any]] = []
    todo = []
    for job in jobs:
        path = work_dir / "continual_runs" / f"{job['stream']}_{job['arm']}_seed{job['seed']}{tag}.json"
        if path.exists() and not args.rerun:
            done.append(json.loads(path.read_text()))
        elif not args.summary_only:
            todo.append(job)
    start = time.perf_counter()
    if todo:
        context = mp.get_context("spawn")  # fresh interpreters: no torch thread pool inherited from this one
        # the slow arm (kv_memory, ~2x a step) last: its runs pair with each other, not with a run half as long
        todo.sort(key=lambda job: job["arm"] == "kv_memory")
        groups = [todo[i : i + max(1, args.jobs)] for i in range(0, len(todo), max(1, args.jobs))]
        with context.Pool(max(1, min(args.jobs, len(todo)))) as pool:
            while groups:
                with cpu_lock(args.lock):
                    # keep the lock for further groups while the hold stays under --lock-hold seconds
                    held, last = time.perf_counter(), 0.0
                    while groups and (not last or time.perf_counter() - held + last <= args.lock_hold):
                        began = time.perf_counter()
                        done += pool.map(run_one, groups.pop(0), chunksize=1)
                        last = time.perf_counter() - began
    report: dict[str, Any] = {"args": vars(args), "seconds": round(time.perf_counter() - start, 1), "streams": {}}
    for stream in args.streams:
        results = [r for r in done if r["stream"] == stream]
        if not results:
            continue
        higher = bool(results[0]["higher_is_better"])
        summary = summarise(results, "test")
        report["streams"][stream] = {
            "metric": results[0]["metric"],
            "higher_is_better": higher,
            "task_names": results[0]["task_names"],
            "stage_tasks": results[0]["stage_tasks"],
            "data": results[0]["data"],
            "summary_test": summary,
            "summary_val": summarise(results, "val"),
            "targets_test": targets(summary, higher),
            "runs": results,
        }
        (out_dir / f"continual_{stream}{tag}.json").write_text(json.dumps(report["streams"][stream], indent=1))
        plot(stream, results, summary, out_dir / f"continual_{stream}{tag}.png")
        print(format_table(stream, summary, results[0]["metric"]))
        print(json.dumps({"targets": report["streams"][stream]["targets_test"]}, indent=1))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
