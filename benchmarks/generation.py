"""Per-character generation time of CharLM: linear attention (recurrent, flat) vs softmax (key/value cache, grows).

    flock /tmp/laart_cpu.lock python benchmarks/generation.py [--num_chars 10000] [--ckpt_softmax X --ckpt_linear Y]

Each backend generates ``num_chars`` characters one at a time through its decoding state with an
unbounded context (``window=None``), timing every character. Reported: the mean time per character
around 1k (chars 1000-1099) and around 10k (the last 100), plus the whole curve as a PNG. Without
checkpoints, both models are freshly initialised with the CPU recipe's size (timing does not depend
on the weights). Writes ``generation.json`` and ``generation.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from laart_lab.models.charlm import CharLM, sample_next
from laart_lab.registry import get_registry


def build(attention: str, ckpt: str | None, d_model: int, n_layers: int, n_heads: int) -> CharLM:
    if ckpt:
        return CharLM.from_checkpoint(ckpt)
    torch.manual_seed(0)
    cls = get_registry().get("attention", attention).cls
    return CharLM(attention=cls, vocab_size=65, d_model=d_model, n_layers=n_layers, n_heads=n_heads).eval()


@torch.no_grad()
def time_generation(model: CharLM, num_chars: int, seed: int = 0) -> list[float]:
    """Seconds spent on each generated character (sampling + one decoding step)."""
    generator = torch.Generator().manual_seed(seed)
    cache = model.stack.init_decoding()
    logits = model._step_logits(0, cache)
    times = []
    for _ in range(num_chars):
        start = time.perf_counter()
        token = sample_next(logits, 1.0, None, generator)
        logits = model._step_logits(token, cache)
        times.append(time.perf_counter() - start)
    return times


def window_mean_ms(times: list[float], start: int, width: int = 100) -> float:
    chunk = times[start : start + width]
    return 1000.0 * sum(chunk) / len(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_chars", type=int, default=10_000)
    parser.add_argument("--ckpt_softmax")
    parser.add_argument("--ckpt_linear")
    parser.add_argument("--d_model", type=int, default=128)
    parser.add_argument("--n_layers", type=int, default=4)
    parser.add_argument("--n_heads", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", "--out-dir", default="benchmarks/results")
    args = parser.parse_args()
    if args.num_chars < 1100:
        parser.error("--num_chars must be >= 1100 to report the 1k point")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    curves: dict[str, list[float]] = {}
    for name, ckpt in (("linear", args.ckpt_linear), ("softmax", args.ckpt_softmax)):
        model = build(name, ckpt, args.d_model, args.n_layers, args.n_heads)
        times = time_generation(model, args.num_chars)
        curves[name] = times
        results[name] = {
            "ms_per_char_at_1k": round(window_mean_ms(times, 1000), 3),
            f"ms_per_char_at_{args.num_chars // 1000}k": round(window_mean_ms(times, args.num_chars - 100), 3),
            "total_seconds": round(sum(times), 2),
        }
    report = {
        "num_chars": args.num_chars,
        "model": {"d_model": args.d_model, "n_layers": args.n_layers, "n_heads": args.n_heads},
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "results": results,
    }
    (out / "generation.json").write_text(json.dumps(report, indent=2))
    _plot(curves, out / "generation.png")
    keys = list(next(iter(results.values())).keys())
    print(f"{'backend':10s}" + "".join(f"{k:>24s}" for k in keys))
    for name, row in results.items():
        print(f"{name:10s}" + "".join(f"{row[k]:>24}" for k in keys))
    print(f"wrote {out / 'generation.json'} and {out / 'generation.png'}")


def _plot(curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, times in curves.items():
        width = 100
        smoothed = [1000 * sum(times[i : i + width]) / width for i in range(0, len(times) - width + 1, width)]
        ax.plot(range(width, len(times) + 1, width), smoothed, label=name)
    ax.set_xlabel("characters generated")
    ax.set_ylabel("ms per character (mean of 100)")
    ax.set_title("CharLM incremental generation cost")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
