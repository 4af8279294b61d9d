"""Start-up time of the ``laart-lab`` command: wall seconds per call, and the heavy modules each imports.

    flock /tmp/laart_cpu.lock python benchmarks/startup.py --repeats 5 --out-dir bench_out

Targets (issue 14, a quiet 2-core machine): ``--version`` and ``--help`` under 1 s, ``plugins`` and
``recipes`` under 3 s. Each command runs in a fresh interpreter (``python -m laart_lab``), as a user
runs it; the table shows the median and the best of ``--repeats`` calls, the 1-minute load average
at the start (figures on a busy machine are not comparable), and whether torch / lightning were imported.
Writes ``startup.json`` into ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {"--version": 1.0, "--help": 1.0, "plugins": 3.0, "recipes": 3.0}
PROBE = (
    "import runpy, sys; sys.argv = ['laart-lab', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('laart_lab', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    "sys.stderr.write('\\nIMPORTED ' + ' '.join(m for m in ('torch', 'lightning') if m in sys.modules))\n"
)


def time_command(args: list[str], repeats: int) -> dict:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "laart_lab", *args], capture_output=True, check=True)
        seconds.append(time.perf_counter() - start)
    probe = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True)
    imported = probe.stderr.rsplit("IMPORTED", 1)[-1].split()
    return {"median_s": statistics.median(seconds), "best_s": min(seconds), "runs_s": seconds, "imports": imported}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out-dir", default="bench_out")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    results = {}
    print(f"laart-lab start-up, {args.repeats} calls each, load average {load:.2f} on {os.cpu_count()} cores")
    print(f"{'command':<12} {'median s':>9} {'best s':>8} {'target s':>9}  imports")
    for command, target in COMMANDS.items():
        result = time_command([command], args.repeats)
        result["target_s"] = target
        results[command] = result
        print(
            f"{command:<12} {result['median_s']:>9.2f} {result['best_s']:>8.2f} {target:>9.1f}  "
            f"{', '.join(result['imports']) or '-'}"
        )
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"load_average_1min": load, "cpus": os.cpu_count(), "python": sys.version.split()[0], "commands": results}
    (out / "startup.json").write_text(json.dumps(payload, indent=2))
    print(f"wrote {out / 'startup.json'}")


if __name__ == "__main__":
    main()
