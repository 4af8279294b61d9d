"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s typecheck``, ``nox -s bench``.

Torch is installed first, pinned by ``LAART_LAB_TORCH`` (default ``torch==2.13.0``, a CPU build on the
project's CI machines), so that resolving the project's dependencies never pulls a multi-GB CUDA build
by accident. On a GPU machine set e.g. ``LAART_LAB_TORCH=torch`` to take your CUDA build.
"""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck"]

TORCH = os.environ.get("LAART_LAB_TORCH", "torch==2.13.0")
THIRD_PARTY_PLUGINS = ["tests/plugin_dists/laart-example-plugin", "plugins_contrib/laart-ctm"]


def install_project(session: nox.Session) -> None:
    session.install(TORCH)
    session.install("-e", ".[dev]")  # dev brings triton: the kernel tests run in Triton's CPU interpreter
    # Third-party plugins are installed as users install them: regular (non-editable) installs.
    for plugin in THIRD_PARTY_PLUGINS:
        if os.path.isdir(plugin):
            session.install("--no-deps", plugin)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (slow tests included, as in CI). Extra args go to pytest."""
    install_project(session)
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "laart_lab", "tests", "benchmarks", "plugins_contrib", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    install_project(session)
    session.run("mypy", "laart_lab")


BENCHMARKS = (
    "startup.py",
    "attention.py",
    "generation.py",
    "clutrr_per_k.py",
    "slrm_penalty.py",
    "memory_compare.py",
    "laart_clutrr.py",
)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark scripts: each prints a table and writes JSON + PNG under bench_out/."""
    install_project(session)
    os.makedirs("bench_out", exist_ok=True)
    # in order: slrm_penalty reads the checkpoints clutrr_per_k writes; tb_curve.py reads logs, it is no benchmark
    for script in BENCHMARKS:
        session.run("python", f"benchmarks/{script}", "--out-dir", "bench_out", *session.posargs)
