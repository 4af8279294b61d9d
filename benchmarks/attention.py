"""Attention scaling benchmark: wall time and peak memory against sequence length T.

Sweeps T (default 1k, 2k, ..., 128k) for each attention backend and implementation, forward only
(``fwd``, under ``torch.no_grad``) and forward + backward (``fwd_bwd``), and reports:

* ``seconds``: median wall time of ``--repeats`` runs after one warm-up run;
* ``peak_mem_mb``: peak memory the call needed *beyond* its inputs and outputs (for ``fwd_bwd`` the
  outputs include the q/k/v gradients). CPU: growth of the process' resident set, read from the
  kernel's exact high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs`` after handing
  freed heap back with ``malloc_trim``), or from a 1 ms sampling thread where that reset is not
  allowed. CUDA: ``torch.cuda.max_memory_allocated`` minus what was allocated before the call;
* ``status``: ``ok``, ``skipped`` (predicted to exceed ``--time-budget`` or ``--mem-limit-mb``: exact
  softmax on long sequences), ``oom`` or ``error`` (e.g. a kernel that does not compile); the note says why;
* the fitted exponent ``p`` of ``seconds ~ T^p`` per backend/impl/pass, over all measured T and over
  ``T >= --fit-min-len`` (where fixed per-call overheads no longer dominate).

On CUDA it also times the peers to beat when installed: flash-linear-attention's chunk kernel
(``fla.ops.linear_attn.chunk_linear_attn``, backend ``fla``) and xformers (``softmax:xformers``).

Derived figures (printed and in the JSON): ``crossovers`` (the T from which each linear series beats
each softmax series), ``peer_ratios`` (``linear:triton`` time over ``fla:chunk``'s) and ``roofline``
(each linear forward against the HBM roofline: bytes of q, k, v and o over ``--hbm-tbps``).

The predicted time of a point is ``--time-budget`` s at most: a point whose extrapolation from the
previous T (at exponent max(fit, 2) for softmax, max(fit, 1) otherwise) exceeds it is skipped, as is
one whose extrapolated memory exceeds ``--mem-limit-mb``; CUDA out-of-memory is caught and recorded.

Example (the CPU targets of issue 3)::

    flock /tmp/laart_cpu.lock python benchmarks/attention.py --seq-lens 1024,100000 \\
        --backends softmax,linear --passes fwd,fwd_bwd --device cpu --json out.json --plot out.png
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import inspect
import json
import math
import os
import platform
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script from a source checkout: make laart_lab importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from laart_lab.attention import LinearAttention, SoftmaxAttention, xformers_unavailable_reason  # noqa: E402
from laart_lab.kernels.linear_attn.utils import feature_map, triton_interpreting  # noqa: E402

DEFAULT_SEQ_LENS = [1024 * 2**i for i in range(8)]  # 1k .. 128k
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_IMPLS = {
    "cpu": {"softmax": ["sdpa"], "linear": ["chunked"], "fla": ["chunk"]},  # fla: recorded as skipped
    "cuda": {"softmax": ["sdpa", "xformers"], "linear": ["triton", "chunked"], "fla": ["chunk"]},
}


@dataclass
class Record:
    backend: str
    impl: str
    seq_len: int
    pass_: str
    dtype: str
    device: str
    seconds: float | None
    peak_mem_mb: float | None
    status: str = "ok"
    note: str = ""
    repeats: int = 0
    batch: int = 1
    heads: int = 8
    head_dim: int = 64
    causal: bool = True

    def to_json(self) -> dict:
        data = asdict(self)
        data["pass"] = data.pop("pass_")
        return data


# ----------------------------------------------------------------------------- memory measurement


class CpuPeakMemory:
    """Peak resident-set growth of this process during a ``with`` block, in bytes."""

    _page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def __init__(self) -> None:
        self.peak_growth = 0
        self._libc = None
        with contextlib.suppress(OSError):
            self._libc = ctypes.CDLL("libc.so.6")

    @staticmethod
    def _status_kb(field: str) -> int:
        with open("/proc/self/status") as f:
            match = re.search(rf"{field}:\s+(\d+) kB", f.read())
        return int(match.group(1)) * 1024 if match else 0

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _reset_hwm(self) -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            return True
        except OSError:
            return False

    def __enter__(self) -> CpuPeakMemory:
        gc.collect()
        if self._libc is not None:
            self._libc.malloc_trim(0)  # hand freed heap back, or reuse of it would hide growth
        self._exact = self._reset_hwm()
        self._base = self._rss()
        self._sampled = self._base
        self._stop = threading.Event()
        if not self._exact:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._sampled = max(self._sampled, self._rss())
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._exact:
            peak = max(self._status_kb("VmHWM"), self._rss())
        else:
            self._thread.join()
            peak = max(self._sampled, self._rss())
        self.peak_growth = peak - self._base


class CudaPeakMemory:
    """Peak CUDA allocation growth during a ``with`` block, in bytes."""

    def __enter__(self) -> CudaPeakMemory:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self._base = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc) -> None:
        torch.cuda.synchronize()
        self.peak_growth = torch.cuda.max_memory_allocated() - self._base


# ----------------------------------------------------------------------------- backends


def make_attention(backend: str, impl: str, causal: bool, chunk_size: int) -> Callable:
    """``fn(q, k, v) -> out`` for one backend/impl, or raise ``ValueError`` saying why it cannot run."""
    if backend == "softmax":
        module = SoftmaxAttention(impl=impl)  # type: ignore[arg-type]
        return lambda q, k, v: module(q, k, v, causal=causal)
    if backend == "linear":
        module = LinearAttention(impl=impl, chunk_size=chunk_size)  # type: ignore[arg-type]
        return lambda q, k, v: module(q, k, v, causal=causal)
    if backend == "fla":
        return _fla_attention(causal)
    raise ValueError(f"unknown backend {backend!r}; choose softmax, linear or fla")


def _fla_attention(causal: bool) -> Callable:
    """flash-linear-attention's chunk kernel with the same elu+1 feature map and normaliser."""
    if not causal:
        raise ValueError("fla's chunk_linear_attn is causal only")
    try:
        from fla.ops.linear_attn import chunk_linear_attn
    except ImportError as err:
        raise ValueError(f"flash-linear-attention is not installed ({err})") from err
    params = inspect.signature(chunk_linear_attn).parameters
    layout = {"head_first": False} if "head_first" in params else {}  # older releases default to [B,H,T,D]

    def run(q, k, v):
        out = chunk_linear_attn(
            feature_map(q, "elu+1"), feature_map(k, "elu+1"), v, scale=1.0, normalize=True, **layout
        )
        return out[0] if isinstance(out, tuple) else out

    return run


def check_runnable(backend: str, impl: str, device: torch.device, dtype: torch.dtype) -> str | None:
    """Why ``backend:impl`` cannot run on this device/dtype (then it is recorded as skipped)."""
    probe = torch.empty(0, device=device, dtype=dtype)
    if backend == "softmax" and impl == "xformers":
        return xformers_unavailable_reason(probe)
    if backend == "linear" and impl == "triton":
        if device.type != "cuda" and not triton_interpreting():
            return "Triton kernels need CUDA (or TRITON_INTERPRET=1: the CPU interpreter, for dry runs)"
        try:
            import triton  # noqa: F401
        except ImportError:
            return "triton is not installed"
    if backend == "fla" and device.type != "cuda":
        return "fla needs CUDA"
    return None


# ----------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_once(fn: Callable, inputs: tuple, grad_out: torch.Tensor | None) -> int:
    """One call (forward, or forward + backward); returns the bytes of what it hands back."""
    if grad_out is None:
        with torch.no_grad():
            out = fn(*inputs)
        return out.numel() * out.element_size()
    for x in inputs:
        x.grad = None
    out = fn(*inputs)
    out.backward(grad_out)
    return sum(x.grad.numel() * x.grad.element_size() for x in inputs) + out.numel() * out.element_size()


def measure(
    fn: Callable, inputs: tuple, grad_out: torch.Tensor | None, device: torch.device, repeats: int, budget: float
) -> tuple[float, float, int]:
    """Median seconds, peak extra memory (MB) and the number of timed repeats.

    Order: one warm-up (lazy initialisation, kernel compilation; not measured), one run under the
    memory meter, then the timed repeats -- fewer when one call is long against ``budget``.
    """
    start = time.perf_counter()
    run_once(fn, inputs, grad_out)
    _sync(device)
    warm = time.perf_counter() - start
    for x in inputs:
        x.grad = None
    meter = CudaPeakMemory() if device.type == "cuda" else CpuPeakMemory()
    with meter:
        out_bytes = run_once(fn, inputs, grad_out)
        _sync(device)
    for x in inputs:
        x.grad = None
    peak_mb = max(0.0, (meter.peak_growth - out_bytes) / 2**20)
    repeats = max(1, min(repeats, int(budget / max(warm, 1e-9)) - 2))
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        run_once(fn, inputs, grad_out)
        _sync(device)
        times.append(time.perf_counter() - start)
        for x in inputs:
            x.grad = None
    return statistics.median(times), peak_mb, repeats


def predicted(records: list[Record], key: tuple, seq_len: int, default_exponent: float) -> tuple[float, float]:
    """Extrapolated (seconds, MB) at ``seq_len`` from the largest measured T of the same series."""
    done = [r for r in records if (r.backend, r.impl, r.pass_) == key and r.seconds is not None]
    if not done:
        return 0.0, 0.0
    last = max(done, key=lambda r: r.seq_len)
    ratio = seq_len / last.seq_len
    fit = fit_exponent([(r.seq_len, r.seconds) for r in done])
    exponent = max(default_exponent, fit) if fit is not None else default_exponent
    return (last.seconds or 0.0) * ratio**exponent, (last.peak_mem_mb or 0.0) * ratio**default_exponent


def fit_exponent(points: list[tuple[int, float | None]]) -> float | None:
    """Least-squares slope of log(seconds) against log(T); None with fewer than two points."""
    pts = [(math.log(t), math.log(s)) for t, s in points if s]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return None if sxx == 0 else sum((x - mx) * (y - my) for x, y in pts) / sxx


# ----------------------------------------------------------------------------- driver


def parse_series(backends: list[str], impls: list[str] | None, device: str) -> list[tuple[str, str]]:
    """``softmax`` -> its default impls on ``device``; ``linear:chunked`` -> that one."""
    series = []
    for spec in backends:
        backend, _, impl = spec.partition(":")
        if backend not in DEFAULT_IMPLS[device]:
            raise SystemExit(f"--backends: unknown backend {backend!r}; choose from softmax, linear, fla")
        chosen = [impl] if impl else DEFAULT_IMPLS[device][backend]
        if impls:
            chosen = [i for i in chosen if i in impls] if not impl else chosen
        series.extend((backend, i) for i in chosen)
    return series


def run_benchmark(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here; use --device cpu")
    dtype = DTYPES[args.dtype]
    series = parse_series(args.backends, args.impls, device.type)
    records: list[Record] = []
    mem_limit = args.mem_limit_mb
    for backend, impl in series:
        reason = check_runnable(backend, impl, device, dtype)
        fn = None
        if reason is None:
            try:
                fn = make_attention(backend, impl, args.causal, args.chunk_size)
            except ValueError as err:
                reason = str(err)
        for pass_ in args.passes:
            for seq_len in args.seq_lens:
                rec = Record(
                    backend, impl, seq_len, pass_, args.dtype, device.type, None, None,
                    batch=args.batch, heads=args.heads, head_dim=args.head_dim, causal=args.causal,
                )  # fmt: skip
                records.append(rec)
                if reason is not None:
                    rec.status, rec.note = "skipped", reason
                    report(rec)
                    continue
                exponent = 2.0 if backend == "softmax" else 1.0
                p_sec, p_mb = predicted(records, (backend, impl, pass_), seq_len, exponent)
                if p_sec > args.time_budget:
                    rec.status = "skipped"
                    rec.note = f"predicted {p_sec:.0f} s per call > --time-budget {args.time_budget:.0f} s"
                    report(rec)
                    continue
                if p_mb > mem_limit:
                    rec.status = "skipped"
                    rec.note = f"predicted {p_mb:.0f} MB > --mem-limit-mb {mem_limit:.0f}"
                    report(rec)
                    continue
                rec.seconds, rec.peak_mem_mb, rec.repeats, rec.status, rec.note = run_series_point(
                    fn, args, device, dtype, seq_len, pass_
                )
                report(rec)
                if args.json:  # partial results survive a timeout (the GPU check kills a sweep that overruns)
                    write_json(args.json, {"config": config_dict(args), "records": [r.to_json() for r in records]})
    fits = []
    for backend, impl in series:
        for pass_ in args.passes:
            pts = [(r.seq_len, r.seconds) for r in records if (r.backend, r.impl, r.pass_) == (backend, impl, pass_)]
            big = [(t, s) for t, s in pts if t >= args.fit_min_len]
            fits.append(
                {
                    "backend": backend,
                    "impl": impl,
                    "pass": pass_,
                    "exponent": fit_exponent(pts),
                    "exponent_large_t": fit_exponent(big),
                    "fit_min_len": args.fit_min_len,
                    "points": sum(1 for _, s in pts if s),
                }
            )
    result = {"config": config_dict(args), "records": [r.to_json() for r in records], "fits": fits}
    result["crossovers"] = crossovers(result["records"])
    result["peer_ratios"] = peer_ratios(result["records"], "linear:triton", "fla:chunk")
    result["roofline"] = rooflines(result["records"], args.hbm_tbps, args.chunk_size)
    return result


# ----------------------------------------------------------------------------- derived figures


def _series_times(records: list[dict], pass_: str) -> dict[str, dict[int, float]]:
    """``{"backend:impl": {T: seconds}}`` of the ``ok`` records of one pass."""
    out: dict[str, dict[int, float]] = {}
    for r in records:
        if r["pass"] == pass_ and r["status"] == "ok" and r["seconds"]:
            out.setdefault(f"{r['backend']}:{r['impl']}", {})[r["seq_len"]] = r["seconds"]
    return out


def crossover(linear: dict[int, float], softmax: dict[int, float]) -> dict:
    """Where linear attention starts to beat softmax: the smallest measured T from which linear is faster
    at every larger T measured for both, and a log-log interpolation of where the time ratio crosses 1."""
    common = sorted(set(linear) & set(softmax))
    if not common:
        return {"crossover_len": None, "interpolated_len": None, "note": "no sequence length measured for both"}
    faster = [linear[t] < softmax[t] for t in common]
    if not faster[-1]:
        return {
            "crossover_len": None,
            "interpolated_len": None,
            "note": f"linear is not faster at the largest common T ({common[-1]})",
        }
    first = len(faster)
    while first > 0 and faster[first - 1]:
        first -= 1
    t_win = common[first]
    notes = []
    if first == 0:
        notes.append("linear is faster at every T measured for both")
    if max(linear) > common[-1]:
        notes.append(f"softmax not measured beyond T={common[-1]}")
    if first == 0:
        return {"crossover_len": t_win, "interpolated_len": None, "note": "; ".join(notes)}
    t_lose = common[first - 1]
    r_lose, r_win = math.log(linear[t_lose] / softmax[t_lose]), math.log(linear[t_win] / softmax[t_win])
    frac = r_lose / (r_lose - r_win) if r_lose != r_win else 1.0
    interp = math.exp(math.log(t_lose) + frac * (math.log(t_win) - math.log(t_lose)))
    return {"crossover_len": t_win, "interpolated_len": round(interp), "note": "; ".join(notes)}


def crossovers(records: list[dict]) -> list[dict]:
    """The crossover of every linear series against every softmax series, per pass."""
    out = []
    for pass_ in sorted({r["pass"] for r in records}):
        times = _series_times(records, pass_)
        for lin in sorted(k for k in times if k.startswith(("linear:", "fla:"))):
            for soft in sorted(k for k in times if k.startswith("softmax:")):
                out.append({"pass": pass_, "linear": lin, "softmax": soft, **crossover(times[lin], times[soft])})
    return out


def peer_ratios(records: list[dict], series: str, peer: str) -> list[dict]:
    """``seconds(series) / seconds(peer)`` at each T where both ran (e.g. our Triton kernels vs fla's)."""
    out = []
    for pass_ in sorted({r["pass"] for r in records}):
        times = _series_times(records, pass_)
        ours, theirs = times.get(series, {}), times.get(peer, {})
        for t in sorted(set(ours) & set(theirs)):
            out.append({"pass": pass_, "series": series, "peer": peer, "seq_len": t, "ratio": ours[t] / theirs[t]})
    return out


def linear_forward_bytes(batch: int, seq_len: int, heads: int, head_dim: int, elem: int, chunk: int) -> dict:
    """HBM bytes of one linear-attention forward (value dim = head dim): the minimum any kernel moves
    (read q, k, v; write o) and, on top, what the chunked Triton kernels also move: the fp32 per-chunk
    states ``[D, E]`` + ``[D]`` written by the scan and read back by the chunk kernel, and the fp32
    normaliser they keep for the backward."""
    tokens = batch * seq_len * heads
    minimum = tokens * 4 * head_dim * elem
    slots = batch * heads * (math.ceil(seq_len / chunk) + 1)
    states = 2 * slots * (head_dim * head_dim + head_dim) * 4 + tokens * 4
    return {"bytes_min": minimum, "bytes_states": states}


def rooflines(records: list[dict], hbm_tbps: float, chunk: int) -> list[dict]:
    """Forward linear-attention times against the HBM roofline ``bytes_min / bandwidth``."""
    elem = {"float32": 4, "bfloat16": 2, "float16": 2}
    out = []
    for r in records:
        if r["backend"] not in ("linear", "fla") or r["pass"] != "fwd" or r["status"] != "ok":
            continue
        nbytes = linear_forward_bytes(r["batch"], r["seq_len"], r["heads"], r["head_dim"], elem[r["dtype"]], chunk)
        roof = nbytes["bytes_min"] / (hbm_tbps * 1e12)
        states = nbytes["bytes_states"] if r["impl"] == "triton" else None  # the others keep other states
        out.append(
            {
                "series": f"{r['backend']}:{r['impl']}",
                "device": r["device"],
                "seq_len": r["seq_len"],
                "bytes_min": nbytes["bytes_min"],
                "bytes_states": states,
                "hbm_tbps": hbm_tbps,
                "roofline_s": roof,
                "roofline_with_states_s": None
                if states is None
                else (nbytes["bytes_min"] + states) / (hbm_tbps * 1e12),
                "seconds": r["seconds"],
                "x_roofline": r["seconds"] / roof,
            }
        )
    return out


def print_derived(result: dict) -> None:
    print("\ncrossover: T from which linear attention is faster than softmax")
    for c in result["crossovers"]:
        at = "none" if c["crossover_len"] is None else str(c["crossover_len"])
        interp = "" if c["interpolated_len"] is None else f" (ratio 1 at T~{c['interpolated_len']})"
        print(f"  {c['pass']:8} {c['linear']:15} vs {c['softmax']:17} T >= {at}{interp}  {c['note']}")
    if result["peer_ratios"]:
        print("\nlinear:triton / fla:chunk time ratio")
        for r in result["peer_ratios"]:
            print(f"  {r['pass']:8} T={r['seq_len']:>7}  {r['ratio']:.2f}x")
    if result["roofline"]:
        print("\nforward vs HBM roofline (bytes of q, k, v, o / bandwidth)")
        for r in result["roofline"]:
            states = "" if r["bytes_states"] is None else f" (+ {r['bytes_states'] / 1e6:.1f} MB of chunk states)"
            print(
                f"  {r['series']:15} T={r['seq_len']:>7}  {r['bytes_min'] / 1e6:10.1f} MB{states}  roofline "
                f"{r['roofline_s'] * 1e3:.4f} ms at {r['hbm_tbps']} TB/s  measured {r['x_roofline']:.2f}x"
            )


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def run_series_point(
    fn: Callable, args: argparse.Namespace, device: torch.device, dtype: torch.dtype, seq_len: int, pass_: str
) -> tuple[float | None, float | None, int, str, str]:
    gen = torch.Generator(device=device).manual_seed(seq_len)
    shape = (args.batch, seq_len, args.heads, args.head_dim)
    try:
        inputs = tuple(torch.randn(shape, generator=gen, device=device, dtype=dtype) for _ in range(3))
        grad_out = None
        if pass_ == "fwd_bwd":
            inputs = tuple(x.requires_grad_() for x in inputs)
            grad_out = torch.randn(shape, generator=gen, device=device, dtype=dtype)
        seconds, peak_mb, repeats = measure(fn, inputs, grad_out, device, args.repeats, args.time_budget)
        return seconds, peak_mb, repeats, "ok", ""
    except torch.OutOfMemoryError as err:
        return None, None, 0, "oom", str(err).splitlines()[0][:200]
    except Exception as err:  # a kernel that fails to compile or launch is recorded; the sweep goes on
        first = (str(err).strip().splitlines() or [""])[0]
        return None, None, 0, "error", f"{type(err).__name__}: {first}"[:300]
    finally:
        inputs = grad_out = None  # type: ignore[assignment]
        if device.type == "cuda":
            torch.cuda.empty_cache()


def config_dict(args: argparse.Namespace) -> dict:
    cfg = {k: v for k, v in vars(args).items() if k not in {"json", "plot", "out_dir"}}
    cfg.update(
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        load_average=os.getloadavg(),  # other processes on the machine skew CPU timings: recorded
        cpu=platform.processor() or platform.machine(),
        gpu=torch.cuda.get_device_name() if args.device == "cuda" else None,
    )
    return cfg


def report(rec: Record) -> None:
    sec = f"{rec.seconds:10.4f}" if rec.seconds is not None else f"{'-':>10}"
    mem = f"{rec.peak_mem_mb:10.1f}" if rec.peak_mem_mb is not None else f"{'-':>10}"
    print(
        f"{rec.backend:8} {rec.impl:9} {rec.pass_:8} {rec.seq_len:>8} {sec} {mem}  {rec.status} {rec.note}",
        flush=True,
    )


def print_fits(result: dict) -> None:
    print("\nfitted exponent p of seconds ~ T^p")
    for fit in result["fits"]:
        whole = "-" if fit["exponent"] is None else f"{fit['exponent']:.3f}"
        big = "-" if fit["exponent_large_t"] is None else f"{fit['exponent_large_t']:.3f}"
        print(
            f"  {fit['backend']:8} {fit['impl']:9} {fit['pass']:8} all T: {whole:>6}   "
            f"T >= {fit['fit_min_len']}: {big:>6}   ({fit['points']} points)"
        )


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    series: dict[tuple, list[dict]] = {}
    for rec in result["records"]:
        if rec["status"] == "ok":
            series.setdefault((rec["backend"], rec["impl"], rec["pass"]), []).append(rec)
    for (backend, impl, pass_), recs in sorted(series.items()):
        recs.sort(key=lambda r: r["seq_len"])
        ts = [r["seq_len"] for r in recs]
        style = "-" if pass_ == "fwd" else "--"
        label = f"{backend}:{impl} {pass_}"
        ax_t.plot(ts, [r["seconds"] for r in recs], style, marker="o", label=label)
        ax_m.plot(ts, [max(r["peak_mem_mb"], 0.1) for r in recs], style, marker="o", label=label)
    cfg = result["config"]
    title = f"{cfg['device']} {cfg['dtype']} B={cfg['batch']} H={cfg['heads']} D={cfg['head_dim']}"
    for ax, ylabel in ((ax_t, "seconds (median)"), (ax_m, "peak extra memory (MB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(title)
    ax_t.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _int_list(text: str) -> list[int]:
    try:
        return [int(float(x)) for x in text.split(",") if x]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err


def _str_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-lens", type=_int_list, default=DEFAULT_SEQ_LENS, help="comma-separated T values")
    parser.add_argument(
        "--backends", type=_str_list, default=["softmax", "linear", "fla"],
        help="comma-separated: softmax, linear, fla, or backend:impl (e.g. linear:chunked,softmax:xformers)",
    )  # fmt: skip
    parser.add_argument("--impls", type=_str_list, default=None, help="keep only these impls of bare backends")
    parser.add_argument("--passes", type=_str_list, default=["fwd", "fwd_bwd"], help="fwd and/or fwd_bwd")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--causal", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--chunk-size", type=int, default=64, help="linear attention chunk size")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up (median reported)")
    parser.add_argument(
        "--time-budget", type=float, default=60.0,
        help="seconds one point may take; longer (extrapolated) points are skipped, long ones repeat less",
    )  # fmt: skip
    parser.add_argument(
        "--mem-limit-mb", type=float, default=None,
        help="skip points whose extrapolated extra memory exceeds this (default: half the free memory)",
    )  # fmt: skip
    parser.add_argument("--fit-min-len", type=int, default=4096, help="T from which the large-T exponent is fit")
    parser.add_argument(
        "--hbm-tbps", type=float, default=4.8,
        help="memory bandwidth (TB/s) of the forward roofline (default 4.8: an H200's HBM3e)",
    )  # fmt: skip
    parser.add_argument(
        "--out-dir", type=Path, default=None,
        help="write attention.json and attention.png here (what `nox -s bench` passes)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="write records and fits here")
    parser.add_argument("--plot", type=Path, default=None, help="write a log-log PNG of time and memory vs T")
    return parser


def _default_mem_limit_mb(device: str) -> float:
    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        return free / 2**20 / 2
    with open("/proc/meminfo") as f:
        match = re.search(r"MemAvailable:\s+(\d+) kB", f.read())
    return int(match.group(1)) / 1024 / 2 if match else 4096.0


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    bad = [p for p in args.passes if p not in ("fwd", "fwd_bwd")]
    if bad:
        raise SystemExit(f"--passes: unknown pass {bad[0]!r}; choose fwd and/or fwd_bwd")
    if args.out_dir is not None:
        args.json = args.json or args.out_dir / "attention.json"
        args.plot = args.plot or args.out_dir / "attention.png"
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here; use --device cpu")
    if args.mem_limit_mb is None:
        args.mem_limit_mb = _default_mem_limit_mb(args.device)
    print(f"{'backend':8} {'impl':9} {'pass':8} {'T':>8} {'seconds':>10} {'peak_MB':>10}  status")
    result = run_benchmark(args)
    print_fits(result)
    print_derived(result)
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot(result, args.plot)
        print(f"wrote {args.plot}")
    return result


if __name__ == "__main__":
    main()
