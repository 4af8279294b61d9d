"""benchmarks/gpu_check.py: its dry run end to end (CPU, Triton interpreter), and its parts."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from laart_lab.paths import data_path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"
SHAKESPEARE = data_path("tinyshakespeare", "input.txt")


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("laart_gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.skipif(not SHAKESPEARE.is_file(), reason=f"reference data absent: {SHAKESPEARE} (set LAART_LAB_DATA)")
def test_dry_run_writes_every_output(tmp_path):
    pytest.importorskip("triton", reason="the dry run's benchmark runs the Triton kernels in the interpreter")
    out = tmp_path / "check"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out-dir", str(out)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "dry-run"
    assert {name: s["status"] for name, s in summary["steps"].items()} == {
        "install": "skipped", "env": "ok", "fit_softmax": "ok", "fit_linear": "ok", "tests": "ok", "bench": "ok",
    }  # fmt: skip
    assert summary["elapsed_s"] < summary["budget_s"]
    for name in ("summary.md", "env.json", "nvidia-smi.txt", "pip-freeze.txt", "pytest_cuda.xml", "attention.png"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "env.json").read_text())["torch"]
    # pytest -m cuda: the cuda tests are collected, and without a GPU every one skips saying why
    tests = summary["tests"]
    assert tests["tests"] > 0 and tests["skipped"] == tests["tests"] and not tests["failed"]
    assert all("CUDA" in reason for reason in tests["skip_reasons"])
    # fits: a few steps of a char LM over 65 characters start near the uniform loss ln(65)
    for name in ("fit_softmax", "fit_linear"):
        fit = summary["fits"][name]
        assert abs(fit["val_loss"] - math.log(65)) < 0.5 and fit["steps"] == 6 and fit["tokens_per_s"] > 0, fit
        assert not list((out / "runs").rglob("*.ckpt"))  # checkpoints are deleted
    # benchmark: the Triton kernels ran under the interpreter; CUDA-only peers are recorded as skipped
    bench = json.loads((out / "attention.json").read_text())
    status = {(r["backend"], r["impl"], r["pass"], r["seq_len"]): r["status"] for r in bench["records"]}
    assert status[("linear", "triton", "fwd_bwd", 128)] == "ok"
    assert status[("fla", "chunk", "fwd", 64)] == "skipped" and status[("softmax", "xformers", "fwd", 64)] == "skipped"
    assert bench["crossovers"] and bench["roofline"]
    assert summary["bench"]["roofline"] == bench["roofline"]
    targets = {t["target"]: t["status"] for t in summary["targets"]}
    assert targets["charlm_val_loss"] == "n/a (dry run)"
    assert "# GPU check (dry-run" in (out / "summary.md").read_text()


def test_targets_pass_and_fail_on_the_figures(gpu_check):
    results = {
        "tests": {"tests": 10, "passed": 10, "failures": 0, "errors": 0, "skipped": 0},
        "bench": {
            "peer_ratios": [
                {"pass": "fwd_bwd", "seq_len": 4096, "ratio": 3.0},  # below 8k: not part of the target
                {"pass": "fwd_bwd", "seq_len": 8192, "ratio": 1.2},
                {"pass": "fwd_bwd", "seq_len": 65536, "ratio": 1.6},
            ],
            "roofline": [{"series": "linear:triton", "seq_len": 8192, "x_roofline": 1.9}],
        },
        "fits": {"fit_softmax": {"val_loss": 1.44}},
    }
    got = {t["target"]: (t["status"], t["value"]) for t in gpu_check.targets(results, dry_run=False)}
    assert got["cuda_tests"][0] == "pass"
    assert got["triton_vs_fla"] == ("fail", "worst 1.60x over 2 lengths")
    assert got["roofline"][0] == "pass" and got["charlm_val_loss"] == ("pass", "1.440 nats")
    empty = {t["target"]: t["status"] for t in gpu_check.targets({}, dry_run=False)}
    assert set(empty.values()) == {"unknown"}


def test_junit_counts_and_failures(gpu_check, tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1">'
        '<testcase classname="t" name="a"/>'
        '<testcase classname="t" name="b"><failure message="boom"/></testcase>'
        '<testcase classname="t" name="c"><skipped message="needs a CUDA GPU"/></testcase>'
        "</testsuite></testsuites>"
    )
    got = gpu_check.parse_junit(xml)
    assert (got["tests"], got["passed"], got["failures"], got["skipped"]) == (3, 1, 1, 1)
    assert got["failed"] == [{"test": "t::b", "message": "boom"}]
    assert got["skip_reasons"] == {"needs a CUDA GPU": 1}
    assert "error" in gpu_check.parse_junit(tmp_path / "absent.xml")


def test_a_step_that_overruns_is_killed_and_recorded(gpu_check, tmp_path):
    args = argparse.Namespace(dry_run=True, budget=60.0, schedule="serial", started_utc="now")
    check = gpu_check.Check(args, tmp_path)
    step = check.step("hang")
    t0 = time.monotonic()
    proc = check.start([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "hang.log")
    check.finish(proc, step, timeout=1.0, t0=t0)
    assert step.status == "timeout" and "killed" in step.detail and proc.poll() is not None
    assert time.monotonic() - t0 < 20
    assert check.timeout_for(1e9) <= 60 - 15  # every step ends inside --budget, leaving time for the summary


def test_max_time_strings_are_read_as_seconds(gpu_check):
    assert gpu_check._seconds("00:00:03:00") == 180
    assert gpu_check._seconds("01:30") == 90
