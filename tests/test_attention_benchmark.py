"""The attention scaling benchmark script: records, skips, memory meter, exponent fit, outputs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "attention.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("laart_bench_attention", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_fit_exponent_recovers_known_powers(bench):
    assert bench.fit_exponent([(t, 3e-6 * t) for t in (1000, 2000, 8000)]) == pytest.approx(1.0)
    assert bench.fit_exponent([(t, 1e-9 * t**2) for t in (1000, 4000)]) == pytest.approx(2.0)
    assert bench.fit_exponent([(1000, 1.0), (2000, None)]) is None


def test_cpu_meter_sees_a_known_allocation(bench):
    with bench.CpuPeakMemory() as meter:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        del block
    assert 60 * 2**20 <= meter.peak_growth < 200 * 2**20


def test_small_sweep_writes_json_and_plot(bench, tmp_path):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    result = bench.main(
        ["--seq-lens", "64,128", "--backends", "softmax,linear", "--passes", "fwd,fwd_bwd", "--device", "cpu",
         "--heads", "2", "--head-dim", "16", "--repeats", "1", "--json", str(out_json), "--plot", str(out_png)]
    )  # fmt: skip
    records = json.loads(out_json.read_text())["records"]
    assert records == result["records"] and len(records) == 8
    for rec in records:
        assert {"backend", "impl", "seq_len", "pass", "dtype", "device", "seconds", "peak_mem_mb"} <= rec.keys()
        assert rec["status"] == "ok" and rec["seconds"] > 0 and rec["peak_mem_mb"] >= 0
    assert {(r["backend"], r["impl"]) for r in records} == {("softmax", "sdpa"), ("linear", "chunked")}
    assert len(result["fits"]) == 4 and all(f["exponent"] is not None for f in result["fits"])
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_points_predicted_over_budget_are_skipped_not_run(bench):
    result = bench.main(
        ["--seq-lens", "64,4096", "--backends", "softmax", "--passes", "fwd", "--device", "cpu",
         "--heads", "1", "--head-dim", "8", "--repeats", "1", "--time-budget", "1e-9"]
    )  # fmt: skip
    first, second = result["records"]
    assert first["status"] == "ok"
    assert second["status"] == "skipped" and "time-budget" in second["note"] and second["seconds"] is None


def test_unrunnable_impls_are_recorded_as_skipped(bench):
    result = bench.main(
        ["--seq-lens", "64", "--backends", "softmax:xformers,linear:triton", "--passes", "fwd", "--device", "cpu"]
    )
    notes = {r["impl"]: (r["status"], r["note"]) for r in result["records"]}
    assert notes["xformers"][0] == "skipped" and "CUDA" in notes["xformers"][1]
    assert notes["triton"][0] == "skipped" and "CUDA" in notes["triton"][1]


def test_chunked_linear_forward_memory_does_not_grow_with_t(bench):
    """Block-wise processing: extra memory beyond the output stays flat from 4k to 64k tokens (a
    materialised [T, D, E] state would need 512 MB at 64k here)."""
    from laart_lab.kernels.linear_attn.chunk import chunk_linear_attention

    extra = {}
    for t in (4096, 65536):
        q, k, v = (torch.randn(1, t, 2, 32) for _ in range(3))
        with torch.no_grad(), bench.CpuPeakMemory() as meter:
            out = chunk_linear_attention(q, k, v, causal=True)
        extra[t] = (meter.peak_growth - out.numel() * 4) / 2**20
        del out
    assert extra[65536] < 64, extra
    assert extra[65536] < extra[4096] + 32, extra


def test_crossover_is_where_linear_stays_faster(bench):
    linear = {1024: 1.0, 2048: 1.5, 4096: 2.0, 8192: 4.0}
    softmax = {1024: 0.5, 2048: 1.4, 4096: 3.0, 8192: 12.0}
    got = bench.crossover(linear, softmax)
    assert got["crossover_len"] == 4096 and 2048 < got["interpolated_len"] < 4096
    assert bench.crossover({1: 1, 2: 5, 3: 1}, {1: 2, 2: 3, 3: 4})["crossover_len"] == 3  # an early win is no crossover
    assert bench.crossover({1: 3, 2: 1, 3: 5}, {1: 2, 2: 3, 3: 4})["crossover_len"] is None  # slower at the end
    assert "every T" in bench.crossover({1: 1, 2: 1}, {1: 2, 2: 3})["note"]


def test_roofline_counts_the_bytes_of_q_k_v_and_o(bench):
    rec = {"backend": "linear", "impl": "triton", "pass": "fwd", "status": "ok", "batch": 2, "seq_len": 65536,
           "heads": 16, "head_dim": 128, "dtype": "bfloat16", "device": "cuda", "seconds": 1e-3}  # fmt: skip
    (roof,) = bench.rooflines([rec, {**rec, "pass": "fwd_bwd"}, {**rec, "status": "skipped"}], 4.8, 64)
    assert roof["bytes_min"] == 4 * 2 * 65536 * 16 * 128 * 2  # q, k, v read and o written, bf16
    assert roof["roofline_s"] == pytest.approx(roof["bytes_min"] / 4.8e12)  # 0.45 ms on an H200
    assert roof["x_roofline"] == pytest.approx(1e-3 / roof["roofline_s"])
    assert roof["bytes_states"] == 2 * 2 * 16 * (1024 + 1) * (128 * 128 + 128) * 4 + 2 * 65536 * 16 * 4


def test_a_failing_backend_is_recorded_and_the_sweep_goes_on(bench):
    def broken(q, k, v):
        raise RuntimeError("PassManager::run failed\nmore detail")

    args = bench.build_parser().parse_args(["--device", "cpu", "--heads", "1", "--head-dim", "8", "--repeats", "1"])
    seconds, mem, repeats, status, note = bench.run_series_point(
        broken, args, torch.device("cpu"), torch.float32, 64, "fwd"
    )
    assert (seconds, status) == (None, "error") and note == "RuntimeError: PassManager::run failed"
