"""Where LAART's slow answers are lost: reading the edges, or choosing the chain to compose.

For a trained ``LaartModel`` checkpoint, per story of a split (validation by default; ``--split test`` only
to read, never to choose): are all the gold edges read right, does the read chain the slow system composes
(:func:`~laart_lab.reasoning.read_paths.best_paths`) walk only gold edges (in either direction), and is
the slow answer right, overall and given each of those. Each chain-search ``--step-costs`` value is scored
on the same reading. Prints a table, writes JSON and a bar plot. Validation's own stories are short (k=2,3);
``--data.init_args.val_chained 600`` adds long ones joined from them (:mod:`laart_lab.data.story_chains`), which
``--min-k 4`` then selects.

    python benchmarks/laart_chain_audit.py --ckpt runs/laart_clutrr/version_0/checkpoints/best.ckpt
    python benchmarks/laart_chain_audit.py --ckpt <ckpt> --min-k 4 -- --data.init_args.val_chained 600
    python benchmarks/laart_chain_audit.py --ckpt <ckpt> --split test --min-k 4 --step-costs 0.05 0 -- \\
        --model.init_args.relation_head kinship_word
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script from a source checkout: make laart_lab importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/recipe_runs.py, also when loaded by path

from recipe_runs import add_checkpoint_arguments, checkpoint_cli_from, split_batches  # noqa: E402

from laart_lab.training_cli import LaartCLI  # noqa: E402

#: the rates reported over the per-story flags of :func:`audit_story` (a rate "x | y" is the share of x among
#: the stories with y)
RATES = (
    ("edges_all_right", None),
    ("chain_on_gold", None),
    ("slow_right", None),
    ("chain_on_gold", "edges_all_right"),
    ("slow_right", "edges_all_right"),
    ("slow_right", "chain_on_gold"),
    ("slow_right", "gold_chain_read_right"),  # what is left once reading and the search are right: composing
)


def audit_story(
    chain: list[int], gold_edges: list[tuple[int, int, str]], read: dict[tuple[int, int], str], slow_right: bool
) -> dict[str, bool]:
    """One story's flags: every gold edge ``(a, c, relation)`` read as ``relation`` (``read``: entity pair ->
    the relation read for it), every step of the entity ``chain`` a gold edge's pair in either direction, and
    whether the slow answer is right; ``gold_chain_read_right``: both of the first two, so the slow system
    composed the gold chain, every step read right."""
    pairs = {frozenset((a, c)) for a, c, _ in gold_edges}
    edges_all_right = all(read.get((a, c)) == relation for a, c, relation in gold_edges)
    chain_on_gold = all(frozenset(step) in pairs for step in zip(chain[:-1], chain[1:]))
    return {
        "edges_all_right": edges_all_right,
        "chain_on_gold": chain_on_gold,
        "gold_chain_read_right": edges_all_right and chain_on_gold,
        "slow_right": slow_right,
    }


def rates(flags: list[dict[str, bool]]) -> dict[str, float]:
    """The :data:`RATES` over stories (a conditional rate is NaN when its condition never holds)."""
    counts = Counter(name for story in flags for name, value in story.items() if value)
    out = {}
    for name, given in RATES:
        if given is None:
            out[name] = counts[name] / max(len(flags), 1)
        else:
            both = sum(1 for story in flags if story[name] and story[given])
            out[f"{name} | {given}"] = both / counts[given] if counts[given] else float("nan")
    return out


def audit(cli: LaartCLI, split: str, min_k: int, step_costs: list[float]) -> dict[str, dict[str, float]]:
    model, data = cli.model, cli.datamodule
    batches = split_batches(data, split)
    names = model.relation_names
    results = {}
    model.eval()
    for cost in step_costs:
        model.step_cost = cost
        flags = []
        with torch.no_grad():
            for batch in batches:
                k = batch.meta.get("task_k")
                out = model(batch)
                read_ids = out.reader.pair_logits[..., : model.num_relations].argmax(-1)
                for i, (chain, gold) in enumerate(zip(out.paths, data.gold_edges(batch.meta["id"]))):
                    if (k if k is not None else int(batch.k[i])) < min_k:
                        continue
                    read = {(a, c): names[int(read_ids[i, a, c])] for a, c, _ in gold}
                    flags.append(audit_story(chain, gold, read, int(out.slow_pred[i]) == int(batch.target[i])))
        results[f"step_cost={cost:g}"] = {"stories": len(flags), **rates(flags)}
    return results


def plot(results: dict[str, dict[str, float]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [key for key in next(iter(results.values())) if key != "stories"]
    figure, axis = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(results)
    for j, (setting, values) in enumerate(results.items()):
        axis.bar([i + j * width for i in range(len(keys))], [values[k] for k in keys], width, label=setting)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(keys))], keys, rotation=20, ha="right", fontsize=8)
    axis.set_ylim(0, 1)
    axis.set_ylabel("share of stories")
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_checkpoint_arguments(parser)
    parser.add_argument("--step-costs", nargs="+", type=float, default=[0.05])
    args = parser.parse_args()
    cli = checkpoint_cli_from(args)
    results = audit(cli, args.split, args.min_k, args.step_costs)
    for setting, values in results.items():
        print(setting, "  ".join(f"{key}: {value:.3f}" for key, value in values.items() if key != "stories"),
              f"({values['stories']} stories)")  # fmt: skip
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"laart_chain_audit_{args.split}"
    record = {"ckpt": args.ckpt, "recipe": args.recipe, "split": args.split, "min_k": args.min_k,
              "overrides": args.extra, "results": results}  # fmt: skip
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    plot(results, str(out / f"{stem}.png"), f"{args.recipe} {args.split} k>={args.min_k}: {Path(args.ckpt).name}")


if __name__ == "__main__":
    main()
