"""The whole GPU check in one call: installs, ``pytest -m cuda``, the attention benchmark, two char-LM fits.

Run from the repository root on a CUDA machine (one call, under 8 minutes by default)::

    python3 benchmarks/gpu_check.py                 # results in gpu_check_out/<UTC time>/
    python3 benchmarks/gpu_check.py --dry-run       # the same steps on CPU, tiny shapes, no installs

Steps, each with its own timeout inside one overall ``--budget`` (a failing or hung step is recorded and
the next one runs):

0. ``install`` (skipped by ``--dry-run`` / ``--no-install``): best effort, skipping what already works:
   torch ``TORCH_FOR_XFORMERS`` + xformers ``XFORMERS_VERSION`` (the torch build that xformers release was
   built for; the CUDA torch wheel brings triton), flash-linear-attention (the peer, ``fla``), pytest-xdist,
   and the project with its ``gpu`` and ``dev`` extras. Outside a virtual environment it first makes
   ``.venv-gpu`` (``--system-site-packages``, so a preinstalled CUDA torch is reused). After the first
   install that cannot reach an index, the others are skipped; the summary lists what is missing.
1. ``env``: ``nvidia-smi``, the versions of python/torch/CUDA/triton/xformers (its build)/fla, ``python -m
   xformers.info``, ``pip freeze``.
2. ``tests``: ``pytest -m cuda tests``: the Triton kernels compiled in fp32/bf16/fp16, forward and backward,
   against the naive reference; xformers against SDPA (causal, padding masks). JUnit XML is parsed.
3. ``fit_softmax`` / ``fit_linear``: ``laart-lab fit --config charlm_shakespeare_{softmax,linear}`` for
   ``--fit-time`` of fit (validation included): final val loss (nats), tokens/s, steps.
4. ``bench``: ``benchmarks/attention.py`` on CUDA, bf16, B=2, H=16, D=128, T = 1k..64k, fwd and fwd+bwd:
   ``linear:triton`` vs ``fla:chunk`` vs ``softmax:xformers`` vs ``softmax:sdpa``, peak memory, the
   crossover T, the Triton/fla time ratio and the forward's HBM roofline (JSON + PNG).

``--schedule overlap`` (default) runs the two fits together, with the tests alongside, so that everything
fits in 8 minutes; the summary says so (their tokens/s are then shared-GPU figures). ``--schedule
serial`` runs one step at a time (about 11 minutes). The benchmark always runs alone, last.

Everything lands in one folder: ``summary.md`` and ``summary.json`` (key figures, targets, each step's
status and log), ``env.json``, ``nvidia-smi.txt``, logs, ``pytest_cuda.xml``, ``attention.json/png``,
``runs/`` (TensorBoard logs of the fits; checkpoints deleted unless ``--keep-checkpoints``).

This file imports only the standard library at the top: it runs before torch is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "attention.py"

# xformers 0.0.35's compiled kernels are built for torch 2.10.0+cu128 (its xformers/cpp_lib.json), and
# PyPI's torch 2.10.0 Linux wheel is that CUDA 12.8 build (Requires-Dist nvidia-cuda-runtime-cu12==12.8.90,
# triton==3.6.0). Keep this pair in step with the README's GPU install line.
TORCH_FOR_XFORMERS = "2.10.0"
XFORMERS_VERSION = "0.0.35"
FLA_PACKAGES = ("flash-linear-attention", "fla-core")  # the second: fla's kernels alone (no transformers)

TARGETS_DOC = {
    "cuda_tests": "every `pytest -m cuda` test passes",
    "triton_vs_fla": "Triton linear attention fwd+bwd within 1.5x of fla's chunk kernel at T = 8k..64k",
    "roofline": "Triton linear attention forward within 2x of the HBM roofline at T = 8k..64k",
    "charlm_val_loss": "GPU char-LM (softmax recipe) val loss <= 1.45 nats after 3 minutes of fit",
}

PROBE = r"""
import importlib, importlib.util, json, os, sys
info = {"python": sys.version.split()[0], "executable": sys.executable}
try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if info["cuda_available"]:
        info.update(gpu=torch.cuda.get_device_name(), gpu_capability=list(torch.cuda.get_device_capability()))
except Exception as err:
    info["torch_error"] = repr(err)
for name in ("triton", "fla", "pytest", "xdist", "tensorboard", "lightning"):
    try:
        module = importlib.import_module(name)
        info[name] = getattr(module, "__version__", "installed")
    except Exception as err:
        info[name] = None
        info[name + "_error"] = repr(err)[:300]
try:
    import xformers
    info["xformers"] = xformers.__version__
    info["xformers_kernels_load"] = bool(getattr(xformers, "_has_cpp_library", False))
    with open(os.path.join(os.path.dirname(xformers.__file__), "cpp_lib.json")) as f:
        info["xformers_build"] = json.load(f).get("version")  # the torch/CUDA its kernels were built for
except Exception as err:
    info.setdefault("xformers", None)
    info["xformers_error"] = repr(err)[:300]
try:
    import laart_lab
    info["laart_lab"] = str(laart_lab.__file__)
    from importlib.metadata import entry_points
    info["laart_lab_entry_points"] = len(entry_points(group="laart_lab"))
except Exception as err:
    info["laart_lab"] = None
    info["laart_lab_error"] = repr(err)[:300]
print(json.dumps(info))
"""

NETWORK_ERRORS = re.compile(
    r"NewConnectionError|Temporary failure in name resolution|Network is unreachable|ConnectTimeout|"
    r"Max retries exceeded|Connection refused"
)


@dataclass
class Step:
    name: str
    status: str = "pending"  # ok | failed | timeout | skipped
    seconds: float = 0.0
    returncode: int | None = None
    log: str | None = None
    detail: str = ""
    command: str | None = None


@dataclass
class Check:
    args: argparse.Namespace
    out: Path
    python: str = sys.executable
    started: float = field(default_factory=time.monotonic)
    steps: dict[str, Step] = field(default_factory=dict)
    installs: list[dict] = field(default_factory=list)
    offline: bool = False
    env_info: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ time and logging

    def remaining(self) -> float:
        return self.args.budget - (time.monotonic() - self.started)

    def timeout_for(self, wanted: float, reserve: float = 15.0) -> float:
        """``wanted`` seconds, cut so that the check still ends (summary written) inside ``--budget``."""
        return max(0.0, min(wanted, self.remaining() - reserve))

    def say(self, text: str) -> None:
        print(f"[gpu_check {time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    def step(self, name: str) -> Step:
        self.steps[name] = Step(name)
        return self.steps[name]

    def save(self) -> None:
        """summary.json after every step: a check killed from outside still leaves what it had."""
        (self.out / "summary.json").write_text(json.dumps(self.summary(), indent=2, default=str))

    # ------------------------------------------------------------------ commands

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
        if self.args.dry_run:
            env.setdefault("OMP_NUM_THREADS", "1")  # parallel dry-run jobs share 2 cores
        return env

    def start(self, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        handle = open(log, "w")  # noqa: SIM115 -- closed by finish()
        handle.write(f"$ {shlex.join(cmd)}\n")
        handle.flush()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env or self.env(), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        proc._log_handle = handle  # type: ignore[attr-defined]
        return proc

    def finish(self, proc: subprocess.Popen, step: Step, timeout: float, t0: float) -> None:
        """Wait for ``proc`` up to ``timeout`` s from ``t0``; a process group that overruns is killed."""
        try:
            step.returncode = proc.wait(timeout=max(0.1, timeout - (time.monotonic() - t0)))
            step.status = "ok" if step.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            step.status, step.detail = "timeout", f"killed after {timeout:.0f} s"
        finally:
            proc._log_handle.close()  # type: ignore[attr-defined]
        step.seconds = round(time.monotonic() - t0, 1)

    @staticmethod
    def error_line(step: Step, log: Path) -> None:
        """Put the last error line of a failed step's log into its detail (the summary then says why)."""
        if step.status not in ("failed", "timeout") or not log.is_file():
            return
        lines = log.read_text(errors="replace").strip().splitlines()
        errors = [line.strip() for line in lines if re.search(r"(Error|Exception|error:|FAILED)", line)]
        if errors:
            step.detail = (step.detail + "; " if step.detail else "") + errors[-1][:300]

    def run(self, step: Step, cmd: list[str], log: Path, timeout: float, env: dict[str, str] | None = None) -> Step:
        step.log, step.command = log.name, shlex.join(cmd)
        if timeout < 5:
            step.status, step.detail = "skipped", "no time left in --budget"
            return step
        t0 = time.monotonic()
        self.finish(self.start(cmd, log, env), step, timeout, t0)
        self.error_line(step, log)
        return step

    def capture(self, cmd: list[str], timeout: float = 60) -> tuple[int | None, str]:
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=timeout)
            return proc.returncode, proc.stdout + proc.stderr
        except (OSError, subprocess.TimeoutExpired) as err:
            return None, f"{type(err).__name__}: {err}"

    def probe(self) -> dict:
        code, text = self.capture([self.python, "-c", PROBE], timeout=120)
        for line in reversed(text.strip().splitlines()):
            with contextlib.suppress(ValueError):
                return json.loads(line)
        return {"probe_error": text[-2000:], "probe_returncode": code}

    # ------------------------------------------------------------------ summary

    def summary(self) -> dict:
        return {
            "mode": "dry-run" if self.args.dry_run else "gpu",
            "schedule": self.args.schedule,
            "started_utc": self.args.started_utc,
            "elapsed_s": round(time.monotonic() - self.started, 1),
            "budget_s": self.args.budget,
            "out_dir": str(self.out),
            "python": self.python,
            "env": self.env_info,
            "installs": self.installs,
            "offline": self.offline,
            "steps": {name: asdict(step) for name, step in self.steps.items()},
            **self.results,
            "targets": targets(self.results, self.args.dry_run),
        }


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# ---------------------------------------------------------------------------------------- install


def choose_python(check: Check) -> None:
    """The interpreter the steps use: ``--python``, the active virtual environment, or ``.venv-gpu``."""
    args = check.args
    if args.python:
        check.python = args.python
        return
    if args.dry_run or sys.prefix != sys.base_prefix:
        check.python = sys.executable
        return
    venv = ROOT / ".venv-gpu"
    py = venv / "bin" / "python"
    if not py.exists():
        code, text = check.capture([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], timeout=120)
        (check.out / "install_venv.log").write_text(text)
        if code != 0 or not py.exists():
            check.installs.append({"what": ".venv-gpu", "status": "failed", "detail": text[-500:]})
            check.python = sys.executable  # a throwaway GPU machine: install into its python
            os.environ["PIP_BREAK_SYSTEM_PACKAGES"] = "1"
            return
        check.installs.append({"what": ".venv-gpu", "status": "ok", "detail": "created (--system-site-packages)"})
    check.python = str(py)


def pip_install(
    check: Check,
    what: str,
    packages: list[str],
    timeout: float,
    constrain_torch: str | None,
    download_first: bool = False,
    by: float = 0.45,
) -> bool:
    """One best-effort ``pip install``; records the outcome. After a network failure the rest are skipped.

    Installs end by the fraction ``by`` of ``--budget`` (the steps need the rest: fits ~200 s, benchmark
    ~100 s). ``download_first``: ``pip download`` into a temporary folder under that deadline (killing a
    download leaves the environment as it was), then install from it offline, past the deadline if need
    be, so that a multi-GB torch is never killed half-installed.
    """
    record = {"what": what, "packages": packages}
    check.installs.append(record)
    if check.offline:
        record.update(status="skipped", detail="no package index reachable (an earlier install could not reach one)")
        return False
    timeout = check.timeout_for(timeout, reserve=check.args.budget * (1 - by))
    if timeout < 20:
        record.update(status="skipped", detail="no time left in --budget for installs")
        return False
    pip = [check.python, "-m", "pip"]
    opts = ["--disable-pip-version-check", "--progress-bar", "off", "--retries", "1", "--timeout", "20"]
    if check.args.wheelhouse:
        opts += ["--find-links", str(check.args.wheelhouse)]
    if constrain_torch:  # never let a later install move the torch that xformers was matched to
        constraints = check.out / "constraints.txt"
        constraints.write_text(f"torch=={constrain_torch}\n")
        opts += ["-c", str(constraints)]
    slug = re.sub(r"[^a-z0-9]+", "_", what.lower()).strip("_")
    log = check.out / f"install_{slug}.log"
    step = Step(what)
    wheels = None
    if download_first:
        wheels = Path(tempfile.mkdtemp(prefix="gpu_check_wheels_"))
        check.run(step, [*pip, "download", *opts, "-d", str(wheels), *packages], log, timeout)
        if step.status == "ok":
            install_log = check.out / f"install_{slug}_from_download.log"
            offline = [*pip, "install", *opts, "--no-index", "--find-links", str(wheels), *packages]
            check.run(step, offline, install_log, 240)
            log.write_text(log.read_text(errors="replace") + install_log.read_text(errors="replace"))
    else:
        check.run(step, [*pip, "install", *opts, *packages], log, timeout)
    if wheels is not None:
        shutil.rmtree(wheels, ignore_errors=True)
    text = log.read_text(errors="replace")
    record.update(status=step.status, seconds=step.seconds, log=log.name)
    if step.status != "ok":
        tail = [line for line in text.strip().splitlines() if "ERROR" in line or "error" in line][-3:]
        record["detail"] = " | ".join(tail)[-600:] or step.detail
        if NETWORK_ERRORS.search(text):
            check.offline = True
            record["detail"] = "no package index reachable: " + record["detail"]
    return step.status == "ok"


def install(check: Check) -> None:
    step = check.step("install")
    t0 = time.monotonic()
    choose_python(check)
    info = check.probe()
    check.say(f"python {check.python}: torch {info.get('torch')} (CUDA {info.get('torch_cuda')}), "
              f"xformers {info.get('xformers')}, triton {info.get('triton')}, fla {info.get('fla')}")  # fmt: skip
    build = info.get("xformers_build") or {}
    torch_base = str(info.get("torch") or "").split("+")[0]
    torch_ok = bool(info.get("torch")) and bool(info.get("torch_cuda"))
    xformers_ok = bool(info.get("xformers_kernels_load")) and str(build.get("torch", "")).split("+")[0] == torch_base
    if torch_ok and xformers_ok:
        check.installs.append({"what": "torch + xformers", "status": "present", "detail": f"torch {info['torch']}, "
                               f"xformers {info['xformers']} built for {build.get('torch')}"})  # fmt: skip
    else:
        pair = [f"torch=={TORCH_FOR_XFORMERS}", f"xformers=={XFORMERS_VERSION}"]
        pip_install(check, "torch + xformers", pair, 300, None, download_first=True, by=0.35)
        info = check.probe()
    pinned = str(info.get("torch") or "").split("+")[0] or None
    in_repo = str(info.get("laart_lab") or "").startswith(str(ROOT))
    if not (in_repo and info.get("laart_lab_entry_points") and info.get("pytest") and info.get("tensorboard")):
        if not pip_install(check, "laart-lab[gpu,dev]", ["-e", ".[gpu,dev]"], 150, pinned):
            was_offline, check.offline = check.offline, False  # no index needed: hatchling may be installed
            if pip_install(check, "laart-lab (no deps)", ["--no-deps", "--no-build-isolation", "-e", "."], 60, pinned):
                check.installs[-2]["status"] = "superseded"
            check.offline = was_offline
    else:
        check.installs.append({"what": "laart-lab", "status": "present", "detail": str(info.get("laart_lab"))})
    if info.get("fla") is None:
        for i, package in enumerate(FLA_PACKAGES):
            if pip_install(check, f"fla ({package})", [package], 120, pinned):
                for earlier in check.installs[len(check.installs) - 1 - i : -1]:
                    earlier["status"] = "superseded"  # the fallback worked
                break
    else:
        check.installs.append({"what": "fla", "status": "present", "detail": str(info.get("fla"))})
    if info.get("xdist") is None:
        pip_install(check, "pytest-xdist", ["pytest-xdist"], 60, pinned)
    step.seconds = round(time.monotonic() - t0, 1)
    failed = [r["what"] for r in check.installs if r["status"] not in ("ok", "present", "superseded")]
    step.status = "ok" if not failed else "failed"
    step.detail = "could not install: " + ", ".join(failed) if failed else "everything present or installed"
    check.save()


# ---------------------------------------------------------------------------------------- env


def environment(check: Check) -> None:
    step = check.step("env")
    t0 = time.monotonic()
    info = check.probe()
    smi = shutil.which("nvidia-smi")
    if smi:
        _, text = check.capture([smi], timeout=30)
        _, query = check.capture(
            [smi, "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit", "--format=csv"], 30
        )
        (check.out / "nvidia-smi.txt").write_text(text + "\n" + query)
        info["nvidia_smi"] = query.strip().splitlines()[-1] if query.strip() else text[:300]
    else:
        info["nvidia_smi"] = "nvidia-smi not found"
        (check.out / "nvidia-smi.txt").write_text("nvidia-smi not found on PATH\n")
    if info.get("xformers"):
        _, text = check.capture([check.python, "-m", "xformers.info"], timeout=60)
        (check.out / "xformers-info.txt").write_text(text)
    _, freeze = check.capture([check.python, "-m", "pip", "freeze"], timeout=60)
    (check.out / "pip-freeze.txt").write_text(freeze)
    (check.out / "env.json").write_text(json.dumps(info, indent=2))
    check.env_info = info
    problems = [f"{name} missing" for name in ("torch", "triton", "xformers", "fla") if not info.get(name)]
    if not check.args.dry_run:
        if not info.get("cuda_available"):
            problems.insert(0, "torch sees no CUDA device")
        if info.get("xformers") and not info.get("xformers_kernels_load"):
            problems.append(
                f"xformers' kernels do not load (built for {(info.get('xformers_build') or {}).get('torch')})"
            )
    step.status = "ok" if "torch_error" not in info and "probe_error" not in info else "failed"
    step.detail = "; ".join(problems)
    step.seconds = round(time.monotonic() - t0, 1)
    check.say(f"env: {info.get('gpu') or info['nvidia_smi']}; {step.detail or 'all present'}")
    check.save()


# ---------------------------------------------------------------------------------------- steps


def tests_command(check: Check) -> list[str]:
    junit = check.out / "pytest_cuda.xml"
    cmd = [check.python, "-m", "pytest", "-m", "cuda", "tests", "-q", "-rfEs", "-p", "no:cacheprovider"]
    cmd += ["--junitxml", str(junit)]
    if check.env_info.get("xdist") and not check.args.dry_run:
        cmd += ["-n", "8"]  # Triton compiles each kernel variant on one core: spread them
    return cmd


def parse_junit(path: Path) -> dict:
    if not path.is_file():
        return {"error": f"{path.name} was not written"}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    failed, skip_reasons = [], {}
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        for tag in ("failure", "error"):
            node = case.find(tag)
            if node is not None:
                failed.append({"test": name, "message": (node.get("message") or "")[:400]})
        node = case.find("skipped")
        if node is not None:
            reason = (node.get("message") or "")[:200]
            skip_reasons[reason] = skip_reasons.get(reason, 0) + 1
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "failed": failed[:50], "skip_reasons": skip_reasons}


def fit_command(check: Check, recipe: str) -> list[str]:
    cmd = [check.python, "-m", "laart_lab", "fit", "--config", recipe]
    cmd += ["--trainer.max_time", check.args.fit_time, "--trainer.enable_progress_bar", "false"]
    cmd += ["--trainer.logger.init_args.save_dir", str(check.out / "runs")]
    if check.args.dry_run:  # tiny: a few CPU steps, one validation, no GPU settings
        cmd += ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--trainer.max_steps", "6"]
        cmd += ["--trainer.val_check_interval", "3", "--trainer.limit_val_batches", "2"]
        cmd += ["--trainer.log_every_n_steps", "1"]
        cmd += ["--model.init_args.d_model", "32", "--model.init_args.n_layers", "1", "--model.init_args.n_heads", "2"]
        cmd += ["--data.init_args.block_size", "32", "--data.init_args.batch_size", "4"]
        cmd += ["--data.init_args.eval_batch_size", "8", "--data.init_args.num_workers", "0"]
    return cmd


FITS = {"fit_softmax": "charlm_shakespeare_softmax", "fit_linear": "charlm_shakespeare_linear"}


def fit_result(check: Check, name: str) -> dict:
    """Key figures of one fit, read from its TensorBoard logs (by the steps' python, which has tensorboard)."""
    runs = sorted((check.out / "runs" / FITS[name]).glob("version_*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        return {"error": "no TensorBoard run was written"}
    code, text = check.capture([check.python, __file__, "--read-run", str(runs[-1])], timeout=120)
    try:
        result = json.loads(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"could not read the run (rc {code}): {text[-500:]}", "run_dir": str(runs[-1])}
    if not check.args.keep_checkpoints:
        for ckpt in runs[-1].rglob("*.ckpt"):
            ckpt.unlink()
    return result


def read_run(run_dir: Path) -> dict:
    """``--read-run``: final and best val loss, tokens/s, steps and wall time of a CharLM TensorBoard run."""
    import yaml
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]

    def series(tag: str) -> list:
        return acc.Scalars(tag) if tag in tags else []

    out: dict = {"run_dir": str(run_dir), "scalar_tags": sorted(tags)}
    val, bpc, train = series("val/loss"), series("val/bpc"), series("train/loss")
    if val:
        out.update(val_loss=val[-1].value, val_loss_best=min(e.value for e in val), val_step=val[-1].step)
        out["val_curve"] = [[e.step, round(e.value, 4)] for e in val]
    if bpc:
        out["val_bpc"] = bpc[-1].value
    if train:
        out.update(train_loss=train[-1].value, steps=train[-1].step + 1)
    # ThroughputMonitor's cumulative counters: tokens so far (length_fn) and training seconds (no validation)
    lengths, seconds = series("train/lengths"), series("train/time")
    if len(lengths) >= 2 and len(lengths) == len(seconds):
        mid = len(lengths) // 2  # the later half: past compilation and warm-up
        span = seconds[-1].value - seconds[mid].value
        if span > 0:
            out.update(tokens_per_s=(lengths[-1].value - lengths[mid].value) / span, tokens_source="train/lengths")
        out.update(tokens=lengths[-1].value, train_s=round(seconds[-1].value, 1))
        if seconds[-1].value > 0:
            out["tokens_per_s_overall"] = lengths[-1].value / seconds[-1].value
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        data = (yaml.safe_load(config_path.read_text()).get("data") or {}).get("init_args") or {}
        out.update(batch_size=data.get("batch_size"), block_size=data.get("block_size"))
    return out


def bench_command(check: Check) -> tuple[list[str], dict[str, str]]:
    cmd = [check.python, str(BENCH), "--json", str(check.out / "attention.json")]
    cmd += ["--plot", str(check.out / "attention.png"), "--passes", "fwd,fwd_bwd"]
    backends = "linear:triton,fla,softmax:xformers,softmax:sdpa"
    if check.args.dry_run:  # Triton under the CPU interpreter; fla and xformers recorded as skipped
        cmd += ["--device", "cpu", "--dtype", "float32", "--batch", "1", "--heads", "2", "--head-dim", "16"]
        cmd += ["--seq-lens", "64,128", "--repeats", "1", "--backends", backends + ",linear:chunked"]
        return cmd, check.env(TRITON_INTERPRET="1")
    cmd += ["--device", "cuda", "--dtype", "bfloat16", "--batch", "2", "--heads", "16", "--head-dim", "128"]
    cmd += ["--seq-lens", check.args.seq_lens, "--repeats", "10", "--time-budget", "15", "--backends", backends]
    cmd += ["--hbm-tbps", str(check.args.hbm_tbps)]
    return cmd, check.env()


def bench_result(check: Check) -> dict:
    path = check.out / "attention.json"
    if not path.is_file():
        return {"error": "attention.json was not written"}
    data = json.loads(path.read_text())
    if "crossovers" not in data:  # a sweep killed by its timeout leaves only records: derive the rest here
        code, text = check.capture([check.python, __file__, "--derive-bench", str(path), "--hbm-tbps",
                                    str(check.args.hbm_tbps)], timeout=60)  # fmt: skip
        data = json.loads(path.read_text()) if code == 0 else {**data, "derive_error": text[-500:]}
    records = data.get("records", [])
    return {
        "config": {k: data.get("config", {}).get(k) for k in ("device", "dtype", "batch", "heads", "head_dim", "gpu")},
        "table": [
            {k: r[k] for k in ("backend", "impl", "pass", "seq_len", "seconds", "peak_mem_mb", "status", "note")}
            for r in records
        ],
        "statuses": {s: sum(1 for r in records if r["status"] == s) for s in sorted({r["status"] for r in records})},
        "crossovers": data.get("crossovers"),
        "peer_ratios": data.get("peer_ratios"),
        "roofline": data.get("roofline"),
        "complete": "fits" in data,
    }


def derive_bench(path: Path, hbm_tbps: float) -> None:
    """``--derive-bench``: add crossovers, peer ratios and the roofline to a partial ``attention.json``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("laart_bench_attention", BENCH)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    data = json.loads(path.read_text())
    chunk = data.get("config", {}).get("chunk_size", 64)
    data["crossovers"] = module.crossovers(data["records"])
    data["peer_ratios"] = module.peer_ratios(data["records"], "linear:triton", "fla:chunk")
    data["roofline"] = module.rooflines(data["records"], hbm_tbps, chunk)
    path.write_text(json.dumps(data, indent=2))


def run_steps(check: Check) -> None:
    args = check.args
    fit_timeout = _seconds(args.fit_time) + 120  # start-up, compile, final validation
    test_timeout = 150 if args.dry_run else 240
    logs = {name: check.out / f"{name}.log" for name in (*FITS, "tests")}

    def collect_fit(name: str) -> None:
        check.results.setdefault("fits", {})[name] = fit_result(check, name)
        fit = check.results["fits"][name]
        check.say(f"{name}: {check.steps[name].status}, val loss {fit.get('val_loss')}, tokens/s "
                  f"{fit.get('tokens_per_s')}, steps {fit.get('steps')}")  # fmt: skip

    def collect_tests() -> None:
        check.results["tests"] = parse_junit(check.out / "pytest_cuda.xml")
        t = check.results["tests"]
        check.say(f"tests: {check.steps['tests'].status}, {t.get('passed')} passed, {t.get('failures')} failed, "
                  f"{t.get('errors')} errors, {t.get('skipped')} skipped")  # fmt: skip

    if args.schedule == "overlap":
        check.say(f"fits ({args.fit_time} each) together, pytest -m cuda alongside")
        t0 = time.monotonic()
        procs = {}
        for name, recipe in FITS.items():
            step = check.step(name)
            cmd = fit_command(check, recipe)
            step.log, step.command = logs[name].name, shlex.join(cmd)
            procs[name] = (step, check.start(cmd, logs[name]), check.timeout_for(fit_timeout))
        tests = check.step("tests")
        cmd = tests_command(check)
        tests.log, tests.command = logs["tests"].name, shlex.join(cmd)
        procs["tests"] = (tests, check.start(cmd, logs["tests"]), check.timeout_for(test_timeout))
        for name in ("tests", *FITS):  # the tests end first
            step, proc, timeout = procs[name]
            check.finish(proc, step, timeout, t0)
            if name != "tests":
                step.detail = "ran at the same time as the other fit and pytest (--schedule overlap)"
            check.error_line(step, logs[name])
            collect_tests() if name == "tests" else collect_fit(name)
            check.save()
    else:
        check.run(check.step("tests"), tests_command(check), logs["tests"], check.timeout_for(test_timeout))
        collect_tests()
        check.save()
        for name, recipe in FITS.items():
            check.run(check.step(name), fit_command(check, recipe), logs[name], check.timeout_for(fit_timeout))
            collect_fit(name)
            check.save()
    cmd, env = bench_command(check)
    check.say("attention benchmark")
    check.run(check.step("bench"), cmd, check.out / "bench.log", check.timeout_for(args.bench_timeout, 20), env)
    check.results["bench"] = bench_result(check)
    check.save()


# ---------------------------------------------------------------------------------------- report


def targets(results: dict, dry_run: bool) -> list[dict]:
    """Each target of the GPU check with its figure and pass / fail / unknown (``n/a`` in a dry run)."""
    out = []

    def add(key: str, value, ok: bool | None) -> None:
        status = (
            "n/a (dry run)"
            if dry_run and key != "cuda_tests"
            else ("unknown" if ok is None else "pass" if ok else "fail")
        )
        out.append({"target": key, "what": TARGETS_DOC[key], "value": value, "status": status})

    t = results.get("tests") or {}
    if "tests" in t:
        add("cuda_tests", f"{t['passed']} passed, {t['failures'] + t['errors']} failed, {t['skipped']} skipped",
            None if dry_run else (t["failures"] + t["errors"] == 0 and t["passed"] > 0))  # fmt: skip
    else:
        add("cuda_tests", t.get("error"), None)
    bench = results.get("bench") or {}
    ratios = [r for r in bench.get("peer_ratios") or [] if r["pass"] == "fwd_bwd" and 8192 <= r["seq_len"] <= 65536]
    worst = max((r["ratio"] for r in ratios), default=None)
    add("triton_vs_fla", None if worst is None else f"worst {worst:.2f}x over {len(ratios)} lengths",
        None if worst is None else worst <= 1.5)  # fmt: skip
    roof = [r for r in bench.get("roofline") or [] if r["series"] == "linear:triton" and 8192 <= r["seq_len"] <= 65536]
    worst_roof = max((r["x_roofline"] for r in roof), default=None)
    add("roofline", None if worst_roof is None else f"worst {worst_roof:.2f}x the roofline over {len(roof)} lengths",
        None if worst_roof is None else worst_roof <= 2.0)  # fmt: skip
    fit = (results.get("fits") or {}).get("fit_softmax") or {}
    loss = fit.get("val_loss")
    add("charlm_val_loss", None if loss is None else f"{loss:.3f} nats", None if loss is None else loss <= 1.45)
    return out


def _fmt(value, spec: str = ".4g") -> str:
    if value is None:
        return "-"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def write_markdown(summary: dict, path: Path) -> str:
    env = summary["env"]
    lines = [
        f"# GPU check ({summary['mode']}, schedule {summary['schedule']}), {summary['started_utc']}",
        "",
        f"{summary['elapsed_s']} s of a {summary['budget_s']} s budget; folder `{summary['out_dir']}`",
        "",
        "## Environment",
        "",
        f"* GPU: {env.get('gpu') or '-'} | nvidia-smi: {env.get('nvidia_smi', '-')}",
        f"* python {env.get('python')}, torch {env.get('torch')} (CUDA {env.get('torch_cuda')}, available: "
        f"{env.get('cuda_available')}), triton {env.get('triton')}, fla {env.get('fla')}",
        f"* xformers {env.get('xformers')} (kernels load: {env.get('xformers_kernels_load')}; built for "
        f"{(env.get('xformers_build') or {}).get('torch')})",
        "",
        "## Targets",
        "",
        "| target | figure | status |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {t['what']} | {_fmt(t['value'])} | **{t['status']}** |" for t in summary["targets"]]
    lines += ["", "## Steps", "", "| step | status | seconds | log | detail |", "| --- | --- | --- | --- | --- |"]
    for step in summary["steps"].values():
        lines.append(
            f"| {step['name']} | {step['status']} | {step['seconds']} | {step['log'] or '-'} | {step['detail']} |"
        )
    if summary["installs"]:
        lines += ["", "## Installs", "", "| what | status | detail |", "| --- | --- | --- |"]
        lines += [f"| {r['what']} | {r['status']} | {r.get('detail', '')} |" for r in summary["installs"]]
    fits = summary.get("fits") or {}
    if fits:
        lines += [
            "",
            "## Char-LM fits",
            "",
            "| run | val loss (nats) | best | val bpc | tokens/s (later half) | steps | train s |",
        ]
        lines += ["| --- | --- | --- | --- | --- | --- | --- |"]
        for name, fit in fits.items():
            cells = [_fmt(fit.get(k)) for k in ("val_loss", "val_loss_best", "val_bpc")]
            cells += [_fmt(fit.get("tokens_per_s"), ".0f"), _fmt(fit.get("steps")), _fmt(fit.get("train_s"))]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    tests = summary.get("tests") or {}
    if tests.get("failed"):
        lines += ["", "## Failing tests", ""] + [f"* `{f['test']}`: {f['message']}" for f in tests["failed"]]
    bench = summary.get("bench") or {}
    if bench.get("table"):
        lines += ["", "## Attention benchmark (seconds, peak extra MB)", ""]
        series = sorted({(r["backend"], r["impl"]) for r in bench["table"]})
        lens = sorted({r["seq_len"] for r in bench["table"]})
        for pass_ in ("fwd", "fwd_bwd"):
            lines += [f"**{pass_}**", "", "| T | " + " | ".join(f"{b}:{i}" for b, i in series) + " |"]
            lines += ["| --- " * (len(series) + 1) + "|"]
            for t in lens:
                cells = []
                for b, i in series:
                    rec = next((r for r in bench["table"] if (r["backend"], r["impl"], r["pass"], r["seq_len"])
                                == (b, i, pass_, t)), None)  # fmt: skip
                    if rec is None:
                        cells.append("")
                    elif rec["status"] == "ok":
                        cells.append(f"{rec['seconds'] * 1e3:.3f} ms, {rec['peak_mem_mb']:.0f} MB")
                    else:
                        cells.append(rec["status"])
                lines.append(f"| {t} | " + " | ".join(cells) + " |")
            lines.append("")
        for c in bench.get("crossovers") or []:
            interp = "" if c["interpolated_len"] is None else f" (ratio 1 at T~{c['interpolated_len']})"
            lines.append(f"* crossover {c['pass']} {c['linear']} vs {c['softmax']}: T >= "
                         f"{_fmt(c['crossover_len'])}{interp} {c['note']}")  # fmt: skip
        for r in bench.get("peer_ratios") or []:
            lines.append(f"* {r['series']} / {r['peer']} {r['pass']} T={r['seq_len']}: {r['ratio']:.2f}x")
        for r in bench.get("roofline") or []:
            lines.append(
                f"* roofline {r['series']} fwd T={r['seq_len']}: {r['bytes_min'] / 1e6:.1f} MB / {r['hbm_tbps']} TB/s "
                f"= {r['roofline_s'] * 1e3:.4f} ms; measured {r['x_roofline']:.2f}x"
                + ("" if r["bytes_states"] is None else f" (chunk states add {r['bytes_states'] / 1e6:.1f} MB)")
            )
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def _seconds(hms: str) -> float:
    """``DD:HH:MM:SS`` (Lightning's max_time string) or ``MM:SS`` / seconds, as seconds."""
    parts = [float(p) for p in hms.split(":")]
    return sum(p * m for p, m in zip(reversed(parts), (1, 60, 3600, 86400)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, Triton interpreter, no installs")
    parser.add_argument("--out-dir", type=Path, default=None, help="default: gpu_check_out/<UTC time>/")
    parser.add_argument("--budget", type=float, default=None, help="seconds for everything (default 465; dry 300)")
    parser.add_argument("--schedule", choices=["overlap", "serial"], default="overlap")
    parser.add_argument("--fit-time", default=None, help="trainer.max_time of each fit (default 00:00:03:00)")
    parser.add_argument("--seq-lens", default=",".join(str(1024 * 2**i) for i in range(7)), help="benchmark T")
    parser.add_argument("--bench-timeout", type=float, default=150.0)
    parser.add_argument("--hbm-tbps", type=float, default=4.8, help="HBM bandwidth of the roofline (H200: 4.8)")
    parser.add_argument("--python", default=None, help="interpreter for the steps (default: venv or .venv-gpu)")
    parser.add_argument("--no-install", action="store_true", help="use the environment as it is")
    parser.add_argument("--wheelhouse", type=Path, default=None, help="extra --find-links folder for pip")
    parser.add_argument("--keep-checkpoints", action="store_true")
    parser.add_argument("--read-run", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--derive-bench", type=Path, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.read_run:
        print(json.dumps(read_run(args.read_run)))
        return 0
    if args.derive_bench:
        derive_bench(args.derive_bench, args.hbm_tbps)
        return 0
    now = datetime.now(timezone.utc)
    args.started_utc = now.strftime("%Y-%m-%d %H:%M:%S UTC")
    args.budget = args.budget or (300.0 if args.dry_run else 465.0)  # a dry run takes ~45 s on 2 idle cores
    args.fit_time = args.fit_time or ("00:00:00:30" if args.dry_run else "00:00:03:00")
    out = args.out_dir or ROOT / "gpu_check_out" / (("dry-" if args.dry_run else "") + now.strftime("%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    check = Check(args, out.resolve())
    check.say(f"{'dry run' if args.dry_run else 'GPU check'}: output in {check.out}, budget {args.budget:.0f} s")
    if args.dry_run or args.no_install:
        choose_python(check)
        check.step("install").status = "skipped"
        check.steps["install"].detail = "--dry-run" if args.dry_run else "--no-install"
    else:
        install(check)
    environment(check)
    run_steps(check)
    summary = check.summary()
    (check.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(write_markdown(summary, check.out / "summary.md"), flush=True)
    check.say(f"done: {check.out / 'summary.md'}")
    failed = [s.name for s in check.steps.values() if s.status in ("failed", "timeout") and s.name != "install"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
