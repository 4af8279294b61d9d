"""Time the SLRM's exact best-derivation chart (``viterbi_reduce``) against its previous memory layout.

At evaluation the SLRM reduces every read chain with a max-product CKY chart. Each split of each span
takes ``max over (a, b) of left[a] + right[b] + log T[a, b, c]`` for every result ``c``: a ``[B, N, N, N]``
block per split. ``viterbi_reduce`` lays the table out as ``[c, a, b]`` and reduces the trailing
``a * b`` block; the layout it replaced (kept below as ``reduce_over_dims_1_2``) reduced dims 1 and 2 of
``[B, a, b, c]``. Both give the same values; the script checks that, times both per path length
(median of ``--repeats``), and writes ``--json`` and a plot (milliseconds per batch against path length).

Shapes default to LAART's evaluation on CLUTRR: 64 stories x 3 read chains = 192 chains per batch,
28 boxes (20 relations + 8 invented concepts), paths of 2..10 steps.

    python benchmarks/slrm_chart.py --json benchmarks/results/slrm_chart_cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from laart_lab.reasoning.slrm import ChartResult, leaf_distributions, viterbi_reduce  # noqa: E402


def reduce_over_dims_1_2(
    path: Tensor, lengths: Tensor, table: Tensor, log_penalty: Tensor | None, path_probs: Tensor | None
) -> ChartResult:
    """``viterbi_reduce`` as it was before the ``[c, a, b]`` layout: the baseline of the comparison."""
    n = table.shape[0]
    batch, max_len = path.shape
    log_table = table.clamp_min(1e-12).log()
    if log_penalty is not None:
        log_table = log_table + log_penalty
    log_table = log_table.unsqueeze(0)  # [1, a, b, c]
    chart: dict[tuple[int, int], Tensor] = {}
    split: dict[tuple[int, int], Tensor] = {}
    leaves = leaf_distributions(path, n, path_probs, table.dtype)
    for i in range(max_len):
        leaf = leaves[:, i]
        chart[(i, i + 1)] = torch.where(leaf > 0, leaf.clamp_min(1e-30).log(), -1e4).clamp_min(-1e4)
    for width in range(2, max_len + 1):
        for i in range(0, max_len - width + 1):
            j = i + width
            candidates = []
            for m in range(i + 1, j):
                joint = chart[(i, m)][:, :, None, None] + chart[(m, j)][:, None, :, None] + log_table
                candidates.append(joint.amax(dim=(1, 2)))
            chart[(i, j)], best = torch.stack(candidates, 1).max(1)
            split[(i, j)] = best + i + 1
    final = torch.zeros(batch, n, dtype=table.dtype, device=table.device)
    for length in lengths.unique().tolist():
        mask = lengths == length
        final[mask] = chart[(0, length)][mask]
    return ChartResult(torch.softmax(final, -1), final.max(-1).values, split)


def median_ms(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def measure(batch: int, boxes: int, relations: int, length: int, repeats: int, seed: int = 0) -> dict:
    """Both layouts on one random batch of soft read chains of ``length`` steps; their outputs must agree."""
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(boxes, boxes, boxes, generator=generator).mul(3).softmax(-1)
    probs = torch.randn(batch, length, relations, generator=generator).mul(3).softmax(-1)
    path, lengths = probs.argmax(-1), torch.full((batch,), length)
    with torch.no_grad():
        now = viterbi_reduce(path, lengths, table, None, probs)
        before = reduce_over_dims_1_2(path, lengths, table, None, probs)
        torch.testing.assert_close(now.dist, before.dist)
        torch.testing.assert_close(now.score, before.score)
        now_ms = median_ms(lambda: viterbi_reduce(path, lengths, table, None, probs), repeats)
        before_ms = median_ms(lambda: reduce_over_dims_1_2(path, lengths, table, None, probs), repeats)
    return {"length": length, "ms": now_ms, "ms_before": before_ms, "speedup": before_ms / now_ms}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=192, help="read chains per batch (stories x chains)")
    parser.add_argument("--boxes", type=int, default=28, help="relations + invented concepts")
    parser.add_argument("--relations", type=int, default=20, help="named relations (the read distributions)")
    parser.add_argument("--lengths", type=int, nargs="+", default=list(range(2, 11)))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="bench_out/slrm_chart.json")
    parser.add_argument("--plot", default=None, help="default: the --json path with .png")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [measure(args.batch, args.boxes, args.relations, k, args.repeats) for k in args.lengths]
    print(f"viterbi_reduce, {args.batch} chains x {args.boxes} boxes, {args.threads} threads (median ms per batch)")
    print("| steps | [c, a, b] layout (now) | [a, b, c] layout (before) | speedup |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['length']} | {row['ms']:.2f} | {row['ms_before']:.2f} | {row['speedup']:.1f}x |")
    record = {"batch": args.batch, "boxes": args.boxes, "threads": args.threads, "rows": rows}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    plot = Path(args.plot) if args.plot else out.with_suffix(".png")
    figure, axis = plt.subplots(figsize=(6, 4))
    steps = [row["length"] for row in rows]
    axis.plot(steps, [row["ms_before"] for row in rows], "o-", label="[a, b, c], reduce dims 1, 2 (before)")
    axis.plot(steps, [row["ms"] for row in rows], "o-", label="[c, a, b], reduce the last block (now)")
    axis.set(xlabel="read chain steps", ylabel="ms per batch", yscale="log", title="SLRM best-derivation chart")
    axis.legend()
    figure.tight_layout()
    figure.savefig(plot, dpi=120)
    print(f"wrote {out} and {plot}")
    return record


if __name__ == "__main__":
    main()
