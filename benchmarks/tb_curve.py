"""Print the scalar curves of a TensorBoard run (val/loss etc.) as a table: step, wall seconds, value.

python benchmarks/tb_curve.py runs/charlm_shakespeare_softmax_cpu/version_0 [--tags val/loss val/bpc]
"""

from __future__ import annotations

import argparse
import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def curves(log_dir: str, tags: list[str]) -> dict[str, list[tuple[int, float, float]]]:
    """``{tag: [(step, seconds since the first event, value), ...]}`` for each tag present."""
    acc = EventAccumulator(log_dir, size_guidance={"scalars": 0})
    acc.Reload()
    available = acc.Tags()["scalars"]
    start = min((acc.Scalars(t)[0].wall_time for t in available if acc.Scalars(t)), default=0.0)
    return {
        tag: [(e.step, round(e.wall_time - start, 1), round(e.value, 4)) for e in acc.Scalars(tag)]
        for tag in tags
        if tag in available
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("log_dir")
    parser.add_argument("--tags", nargs="+", default=["val/loss", "val/bpc", "train/loss"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data = curves(args.log_dir, args.tags)
    if args.json:
        print(json.dumps(data))
        return
    for tag, rows in data.items():
        print(f"== {tag}")
        for step, seconds, value in rows:
            print(f"  step {step:6d}  t={seconds:7.1f}s  {value:.4f}")


if __name__ == "__main__":
    main()
