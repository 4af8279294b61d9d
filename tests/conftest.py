"""Shared fixtures: fake installed distributions, CLI runners, and registry isolation."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from laart_lab.registry import reset_registry

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` skip, saying why, where torch sees no CUDA device (``pytest -m cuda`` on a GPU)."""
    cuda_items = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not cuda_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    skip = pytest.mark.skip(reason=f"needs a CUDA GPU: torch {torch.__version__} ({build}) sees none")
    for item in cuda_items:
        item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    """Each test starts and ends with a registry built from what is installed."""
    reset_registry()
    yield
    reset_registry()


#: a complete third-party attention plugin (a module with one hookimpl), used by registry and CLI tests
ECHO_PLUGIN = """
import laart_lab
from laart_lab.components import AttentionBackend

class Echo(AttentionBackend):
    def forward(self, q, k, v, causal=False, key_padding_mask=None):
        return v

@laart_lab.hookimpl
def register_attention(register):
    register("echo", Echo)
"""


def make_distribution(
    site: Path, name: str, version: str, entry_points: dict[str, str], modules: dict[str, str]
) -> Path:
    """Write an installed distribution (``*.dist-info`` with entry points) and its modules into ``site``.

    importlib.metadata finds it like any pip-installed package once ``site`` is on ``sys.path``.
    """
    site.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)
    dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[laart_lab]\n{lines}")
    return site


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models: one intra-op thread avoids oversubscription on a shared 2-core runner (50x here).

    Use it per module: ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Factory: install a fake distribution on ``sys.path`` for this test (and its subprocesses)."""
    site = tmp_path / "site"

    def install(name: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
        make_distribution(site, name, version, entry_points, modules)
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
        return site

    return install


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run ``python -m laart_lab ARGS`` in a fresh process, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "laart_lab", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_two_rank_script(script: str, tmp_path: Path, timeout: int = 400) -> tuple[dict, dict]:
    """Run ``script`` (a 2-process DDP fit that saves ``{out}/rank{R}.pt``; ``out`` = ``sys.argv[1]``) and
    return both ranks' saved dicts."""
    import textwrap

    import torch

    path = tmp_path / "two_ranks.py"
    path.write_text(textwrap.dedent(script))
    result = subprocess.run(
        [sys.executable, str(path), str(tmp_path)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    return ranks[0], ranks[1]
