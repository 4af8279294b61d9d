"""LAART (reader + reasoner + check) on CLUTRR story text: per-k accuracy of the fast, slow and combined
answers and edge accuracy, over several seeds, each checkpoint chosen on validation only.

For each seed: build everything from the recipe as ``laart-lab fit`` does (``LaartCLI(run=False)``), fit,
then test the checkpoint ModelCheckpoint chose on ``val/acc`` (``ckpt_path="best"``). Prints one
mean ± std table (fast / slow / laart / edges per k) and the reference figures of GPT-4 with
Faithful chain-of-thought, writes every seed's figures to ``--json`` and a plot to ``--plot``.
Before the test, the chosen checkpoint is validated again (``val_best``: the figures a choice between
settings is made on). ``--validation-only`` stops there: no test is run, so a candidate setting can be
judged on validation without its test figures being seen first. Once the decision is made,
``--test-validated`` tests the checkpoints those runs chose (validating each again first, which also
re-chooses the check threshold, and refusing one whose validation figures changed). After a change of
evaluation-only settings chosen on validation (``read_temperature``, ``chains``), ``--evaluation-changed`` records
the new validation figures instead and tests the same checkpoints, with no new fit.

    flock /tmp/laart_cpu.lock python benchmarks/laart_clutrr.py --recipe laart_clutrr --seeds 0 1 2
    python benchmarks/laart_clutrr.py --seeds 0 --validation-only --out-dir v -- --data.init_args.relation_swap 0.5
    python benchmarks/laart_clutrr.py --test-validated v/laart_clutrr.json --out-dir v
    python benchmarks/laart_clutrr.py --test-validated v/laart_clutrr.json --evaluation-changed --out-dir v2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script from a source checkout: make laart_lab importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/recipe_runs.py, also when loaded by path
from recipe_runs import fit_then_test, recipe_cli  # noqa: E402

from laart_lab.training_cli import LaartCLI  # noqa: E402

#: GPT-4 + Faithful CoT on 1,042 of the 1,146 data_089907f8 test stories (Lyu et al., 2023), k = 2..10
GPT4_FAITHFUL_COT = {2: 0.63, 3: 0.80, 4: 0.68, 5: 0.63, 6: 0.65, 7: 0.66, 8: 0.57, 9: 0.59, 10: 0.47}
COLUMNS = (
    ("fast", "fast_acc"),
    ("slow", "slow_acc"),
    ("laart", "acc"),
    ("edges", "edge_acc"),  # the relation read for each gold edge's pair
    ("edges strict", "edge_acc_strict"),  # ... and the pair marked as stated (P(none) < 0.5)
)


def _copy(table: dict[str, dict[int, float]]) -> dict[str, dict[int, float]]:
    """A per-k table as it stands now (the model overwrites its tables at every evaluation)."""
    return {key: dict(values) for key, values in table.items()}


def run(recipe: str, seed: int, out_dir: str, extra: list[str], test: bool = True) -> dict:
    tables: dict[str, dict] = {}

    def validate_the_chosen_checkpoint(cli: LaartCLI) -> None:
        tables["val_last_epoch"] = _copy(cli.model.last_val_table)
        cli.trainer.validate(cli.model, cli.datamodule, ckpt_path="best", verbose=False)
        tables["val_best"] = _copy(cli.model.last_val_table)

    # the data split stays the recipe's (seed 0) for every model seed
    cli, facts = fit_then_test(
        recipe, seed, out_dir, extra, seed_data=False, before_test=validate_the_chosen_checkpoint, test=test
    )
    result = {
        **facts,
        "overrides": list(extra),  # what the run changed from the recipe
        "check_threshold": float(cli.model.check_threshold),
        **tables,
    }
    if test:
        result["test"] = _copy(cli.model.last_test_table)
    return result


def tested_after_validation(record: dict, out_dir: str, evaluation_changed: bool = False) -> dict:
    """Test the checkpoint a ``--validation-only`` run chose, as ``run`` would have tested it.

    The recipe, seed and overrides come from the run's record. The checkpoint is validated again first:
    that sets the check threshold as the fit's final validation did, and its figures must equal the
    record's ``val_best``, so what is tested is what was judged (same data, same code).
    ``evaluation_changed``: the recipe's evaluation-only settings were changed on purpose since the run (a
    choice made on validation, e.g. ``read_temperature``): the new validation figures replace ``val_best``
    (the run's own are kept as ``val_best_at_fit``) instead of having to equal them.
    """
    checkpoint = record.get("best_checkpoint")
    if not checkpoint or not Path(checkpoint).is_file() or "val_best" not in record:
        raise SystemExit(
            f"seed {record['seed']}: the record names no checkpoint that exists ({checkpoint!r}) or has no val_best; "
            "--test-validated needs the results file of a --validation-only run whose checkpoints are still on disk"
        )
    cli = recipe_cli(record["recipe"], record["seed"], out_dir, record["overrides"], seed_data=False)
    cli.trainer.validate(cli.model, cli.datamodule, ckpt_path=checkpoint, verbose=False)
    again = _copy(cli.model.last_val_table)
    changed = [
        key
        for key, recorded in record["val_best"].items()
        if key not in again or any(abs(again[key][k] - v) > 1e-6 for k, v in recorded.items())
    ]
    if evaluation_changed:
        record = {**record, "val_best_at_fit": record["val_best"], "val_best": again}
    elif changed:
        raise SystemExit(
            f"seed {record['seed']}: validating {checkpoint} again gives other figures than its run recorded "
            f"({', '.join(changed)}): the data, recipe or code changed since; fit it again instead (or, if only "
            "evaluation settings changed, on purpose, pass --evaluation-changed)"
        )
    cli.trainer.test(cli.model, cli.datamodule, ckpt_path=checkpoint, verbose=False)
    return {**record, "check_threshold": float(cli.model.check_threshold), "test": _copy(cli.model.last_test_table)}


def load_results(paths: list[str]) -> list[dict]:
    """Results files written by this script, one list of records, sorted by seed (k keys back to int)."""
    results = [r for path in paths for r in json.loads(Path(path).read_text(encoding="utf-8"))]
    for r in results:
        for table in ("test", "val_last_epoch", "val_best", "val_best_at_fit"):
            r[table] = {key: {int(k): v for k, v in values.items()} for key, values in r.get(table, {}).items()}
    return sorted(results, key=lambda r: r["seed"])


def results_name(recipe: str) -> str:
    """The results files' name for ``recipe``, a shipped recipe's name or a YAML file's path (its stem)."""
    return Path(recipe).stem if recipe.endswith((".yaml", ".yml")) else recipe


def write_results(results: list[dict], out: Path, recipe: str) -> Path:
    """Write ``<recipe>.json`` under ``out``; return the path without its suffix (the plot's goes beside it)."""
    stem = out / results_name(recipe)
    with open(stem.with_suffix(".json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=1)
    return stem


def write_and_summarise(results: list[dict], out: Path, recipe: str) -> None:
    """Write ``<recipe>.json`` under ``out``, print the summary, and plot when every record has a test."""
    stem = write_results(results, out, recipe)
    print(summarise(results))
    if all("test" in r for r in results):
        plot(results, str(stem.with_suffix(".png")))


def summarise_validation(results: list[dict]) -> str:
    """The chosen checkpoints' validation figures (mean over k of each per-k table), one row per seed."""
    keys = ("acc", "edge_acc", "edge_acc_unseen_wording")
    lines = [
        "validation, the checkpoint chosen on val/acc (mean over k): " + "  ".join(keys),
        *(
            f"  seed {r['seed']}: "
            + "  ".join(
                f"{statistics.mean(r['val_best'][key].values()):.4f}" if r["val_best"].get(key) else "n/a"
                for key in keys
            )
            + f"  ({r['steps']} steps)"
            for r in results
            if "val_best" in r
        ),
    ]
    return "\n".join(lines)


def summarise(results: list[dict]) -> str:
    if not all("test" in r for r in results):  # --validation-only
        return summarise_validation(results)
    ks = sorted({k for r in results for k in r["test"]["acc"]})
    header = f"{'k':>6}" + "".join(f"  {label:>15}" for label, _ in COLUMNS) + f"  {'GPT-4 F-CoT':>11}"
    lines = [f"mean ± std over {len(results)} seeds (checkpoints chosen on val/acc)", header]

    def cell(key: str, ks_subset: list[int]) -> str:
        values = [statistics.mean(r["test"][key][k] for k in ks_subset) for r in results if key in r["test"]]
        if not values:
            return f"  {'n/a':>15}"
        return f"  {statistics.mean(values):>7.3f} ± {statistics.pstdev(values):.3f}"

    for k in ks:
        ref = GPT4_FAITHFUL_COT.get(k)
        lines.append(f"{k:>6}" + "".join(cell(key, [k]) for _, key in COLUMNS) + f"  {ref if ref else '':>11}")
    long = [k for k in ks if k >= 4]
    for label, subset in (("mean", ks), ("k>=4", long)):
        if subset:
            ref = [GPT4_FAITHFUL_COT[k] for k in subset if k in GPT4_FAITHFUL_COT]
            ref_text = f"{statistics.mean(ref):.3f}" if ref else ""
            lines.append(f"{label:>6}" + "".join(cell(key, subset) for _, key in COLUMNS) + f"  {ref_text:>11}")
    unseen = [
        statistics.mean(values.values())
        for r in results
        if (values := r["val_last_epoch"].get("edge_acc_unseen_wording"))
    ]
    if unseen:  # what chose the recipe's settings: reading of validation sentences worded unlike training's
        spread = f"{statistics.mean(unseen):.3f} ± {statistics.pstdev(unseen):.3f}"
        lines.append(f"val edge acc on unseen wording (last epoch): {spread}")
    if any("val_best" in r for r in results):
        lines.append(summarise_validation(results))
    fit = [r["fit_seconds"] for r in results]
    lines.append(
        f"fit {statistics.mean(fit):.0f} s ± {statistics.pstdev(fit):.0f} (steps {[r['steps'] for r in results]}); "
        f"check thresholds chosen on val: {[r['check_threshold'] for r in results]}"
    )
    return "\n".join(lines)


def plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted({k for r in results for k in r["test"]["acc"]})
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for label, key in COLUMNS:
        if not all(key in r["test"] for r in results):
            continue
        means = [statistics.mean(r["test"][key][k] for r in results) for k in ks]
        axis.plot(ks, means, marker="o", label=label)
    axis.plot(list(GPT4_FAITHFUL_COT), list(GPT4_FAITHFUL_COT.values()), "k--", label="GPT-4 Faithful CoT")
    axis.set_xlabel("k (relations in the story's chain)")
    axis.set_ylabel(f"test accuracy (mean of {len(results)} seeds)")
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend()
    overrides = " ".join(results[0].get("overrides", []))
    axis.set_title(f"LAART on CLUTRR text ({results[0]['recipe']}{' ' + overrides if overrides else ''})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="laart_clutrr")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out-dir", default="bench_out")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--from-json", nargs="+", help="summarise and plot the results files of earlier runs (e.g. seeds run apart)"
    )
    parser.add_argument(
        "--validation-only",
        action="store_true",
        help="fit and validate the chosen checkpoint, run no test (judge a candidate before seeing its test)",
    )
    parser.add_argument(
        "--test-validated",
        nargs="+",
        help="test the checkpoints chosen by earlier --validation-only runs (their results files)",
    )
    parser.add_argument(
        "--evaluation-changed",
        action="store_true",
        help="with --test-validated: the recipe's evaluation-only settings changed on purpose since those runs; "
        "record the checkpoints' new validation figures instead of requiring the old ones",
    )
    parser.add_argument("extra", nargs="*", help="extra CLI overrides after --, e.g. --trainer.max_epochs 3")
    args = parser.parse_args()
    if args.evaluation_changed and not args.test_validated:
        parser.error("--evaluation-changed goes with --test-validated (it says how to treat their records)")
    torch.set_num_threads(args.threads)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.test_validated:
        records = load_results(args.test_validated)
        results = [tested_after_validation(r, str(out / "laart_runs"), args.evaluation_changed) for r in records]
        write_and_summarise(results, out, results[0]["recipe"])
        return
    if args.from_json:
        write_and_summarise(load_results(args.from_json), out, args.recipe)
        return
    results = []
    for seed in args.seeds:
        results.append(run(args.recipe, seed, str(out / "laart_runs"), args.extra, test=not args.validation_only))
        stem = write_results(results, out, args.recipe)
        print(f"\n=== {args.recipe}, seeds so far {[r['seed'] for r in results]} ===\n{summarise(results)}", flush=True)
    if not args.validation_only:  # the plot is of test accuracy
        plot(results, str(stem.with_suffix(".png")))


if __name__ == "__main__":
    main()
