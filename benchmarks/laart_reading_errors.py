"""How LAART's reader misreads the facts of a story: which kind of mistake, and by how the story words the fact.

For a trained ``LaartModel`` checkpoint, every gold edge ``(x, y, r)`` ("y is x's r") of the evaluation stories is
compared with the relation the reader reads for ``(x, y)`` (argmax over the relations), and a misreading is put in
one class (:func:`misreading`): the right kind of link with y's gender wrong (``gender``: sister for brother), the
inverse kind (``inverse``: son for father, x and y swapped), the inverse kind and the gender (``inverse+gender``), or
another kind (``other``, ``other+gender``: father for brother, a kinship word of another pair of the sentence). The
edges are grouped by how the story words them (:func:`~laart_lab.data.wording_split.edge_wording`): in a sentence
training also has (names masked, ``seen``), only in wording training never shows (``unseen``, as CLUTRR's test
is), or in no sentence that names both people (``apart``). Prints a table, how often each gold relation is read
right, and the most frequent confusions; writes JSON and a stacked bar plot. Validation by default (``--split
test`` only to read, never to choose).

    python benchmarks/laart_reading_errors.py --ckpt runs/laart_clutrr/version_0/checkpoints/best.ckpt
    python benchmarks/laart_reading_errors.py --ckpt <ckpt> -- --model.init_args.d_model 192 --model.init_args.n_heads 6
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

from laart_lab.data.kinship_algebra import GENDER_OF_TERM, INVERSE_KIND, KIND_OF  # noqa: E402
from laart_lab.training_cli import LaartCLI  # noqa: E402

#: the classes of :func:`misreading`, in the order the table and the plot show them
CLASSES = ("right", "gender", "inverse", "inverse+gender", "other", "other+gender")
WORDINGS = ("seen", "unseen", "apart")


def misreading(gold: str, read: str) -> str:
    """The class (one of :data:`CLASSES`) of reading ``read`` where the story says ``gold`` ("y is x's gold")."""
    if read == gold:
        return "right"
    if gold not in KIND_OF or read not in KIND_OF:
        return "other"  # a relation that is not a gendered kinship term: no kind to compare
    gold_kind, read_kind = KIND_OF[gold], KIND_OF[read]
    same_gender = GENDER_OF_TERM[gold] == GENDER_OF_TERM[read]
    if read_kind == gold_kind:
        return "gender"
    kind = "inverse" if read_kind == INVERSE_KIND.get(gold_kind) else "other"
    return kind if same_gender else f"{kind}+gender"


def tally(
    edges: list[tuple[str, str, str]],
) -> tuple[dict[str, dict[str, int]], list[tuple[str, str, str, int]]]:
    """Counts per wording and class over ``(wording, gold, read)`` edges, and the confusions ``(wording, gold,
    read, count)`` most frequent first."""
    counts: dict[str, dict[str, int]] = {}
    for wording, gold, read in edges:
        row = counts.setdefault(wording, {name: 0 for name in CLASSES})
        row[misreading(gold, read)] += 1
    confusions = Counter((w, g, r) for w, g, r in edges if g != r)
    return counts, [(w, g, r, n) for (w, g, r), n in confusions.most_common()]


def per_relation(edges: list[tuple[str, str, str]]) -> dict[str, dict[str, int]]:
    """Per gold relation, over ``(wording, gold, read)`` edges of every wording: how many edges, how many read right."""
    table: dict[str, dict[str, int]] = {}
    for _, gold, read in edges:
        row = table.setdefault(gold, {"edges": 0, "right": 0})
        row["edges"] += 1
        row["right"] += read == gold
    return table


def read_edges(cli: LaartCLI, split: str, min_k: int) -> list[tuple[str, str, str]]:
    """``(wording, gold, read)`` for every gold edge of the split's stories with at least ``min_k`` relations."""
    model, data = cli.model, cli.datamodule
    names = model.relation_names
    edges: list[tuple[str, str, str]] = []
    model.eval()
    with torch.no_grad():
        for batch in split_batches(data, split):
            read_ids = model.reader(batch.story).pair_logits[..., : model.num_relations].argmax(-1)
            ids = batch.meta["id"]
            for i, (gold, wording) in enumerate(zip(data.gold_edges(ids), data.gold_edge_wording(ids))):
                if int(batch.k[i]) < min_k:
                    continue
                for (x, y, relation), worded in zip(gold, wording, strict=True):  # built together, per edge
                    edges.append((worded, relation, names[int(read_ids[i, x, y])]))
    return edges


def plot(counts: dict[str, dict[str, int]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wordings = [w for w in WORDINGS if w in counts]
    figure, axis = plt.subplots(figsize=(7, 4))
    bottom = [0.0] * len(wordings)
    for name in CLASSES[1:]:  # the misread share of each wording, stacked by class
        shares = [counts[w][name] / max(sum(counts[w].values()), 1) for w in wordings]
        axis.bar(wordings, shares, bottom=bottom, label=name)
        bottom = [b + s for b, s in zip(bottom, shares)]
    axis.set_ylabel("share of the gold edges misread")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_checkpoint_arguments(parser)
    parser.add_argument("--top", type=int, default=15, help="how many confusions to print")
    args = parser.parse_args()
    cli = checkpoint_cli_from(args)
    edges = read_edges(cli, args.split, args.min_k)
    counts, confusions = tally(edges)
    relations = per_relation(edges)
    print(f"{'wording':8} {'edges':>6} " + " ".join(f"{name:>14}" for name in CLASSES))
    for wording in (w for w in WORDINGS if w in counts):
        row = counts[wording]
        total = sum(row.values())
        print(f"{wording:8} {total:6d} " + " ".join(f"{row[name] / total:14.3f}" for name in CLASSES))
    print("per gold relation, least often read right first (edges, right):")
    for relation, row in sorted(relations.items(), key=lambda item: item[1]["right"] / item[1]["edges"]):
        print(f"  {relation:16} {row['edges']:6d} {row['right'] / row['edges']:8.3f}")
    print("most frequent confusions (wording: gold -> read, count):")
    for wording, gold, read, n in confusions[: args.top]:
        print(f"  {wording}: {gold} -> {read}  {n}")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"laart_reading_errors_{args.split}"
    listed = [{"wording": w, "gold": g, "read": r, "count": n} for w, g, r, n in confusions]
    record = {"ckpt": args.ckpt, "recipe": args.recipe, "split": args.split, "min_k": args.min_k,
              "overrides": args.extra, "counts": counts, "per_relation": relations,
              "confusions": listed}  # fmt: skip
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    plot(counts, str(out / f"{stem}.png"), f"{args.recipe} {args.split} k>={args.min_k}: {Path(args.ckpt).name}")


if __name__ == "__main__":
    main()
