"""The README's "Writing a plugin" section, followed literally: its code blocks are the package.

The blocks whose first line is ``# my-plugin/<path>`` are written to ``<path>``, built and installed
with pip (no hand-made metadata), then discovered by ``laart-lab plugins`` and used in a recipe. The
README's attention is checked against the built-in softmax backend (causal alignment, padding mask).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO_ROOT, run_cli

BLOCK = re.compile(r"```(?:toml|python)\n# (my-plugin/[^\n]+)\n(.*?)```", re.S)


def readme_plugin_files() -> dict[str, str]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Writing a plugin", 1)[1].split("\n## ", 1)[0]
    files = {path.strip(): body for path, body in BLOCK.findall(section)}
    assert {"my-plugin/pyproject.toml", "my-plugin/my_package/plugin.py"} <= set(files), sorted(files)
    return files


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    for relative, body in readme_plugin_files().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    site = root / "site"
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            *isolation,
            "--target",
            str(site),
            str(root / "my-plugin"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return site


def test_readme_plugin_is_listed_by_laart_lab_plugins(installed_plugin: Path) -> None:
    env = {"PYTHONPATH": os.pathsep.join([str(installed_plugin), os.environ.get("PYTHONPATH", "")])}
    result = run_cli("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    components = {(c["kind"], c["name"]): c for c in json.loads(result.stdout)["components"]}
    entry = components[("attention", "my_attention")]
    assert entry["distribution"] == "my-plugin" and entry["version"] == "0.1.0"
    assert entry["class"] == "my_package.plugin.MyAttention"


def test_readme_attention_keeps_the_contract(installed_plugin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(installed_plugin))
    from laart_lab.attention.softmax import SoftmaxAttention

    mine = importlib.import_module("my_package.plugin").MyAttention()
    reference = SoftmaxAttention()
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 5, 4, 8), torch.randn(2, 5, 4, 8)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    for causal in (False, True):
        expected = reference(q, k, v, causal=causal, key_padding_mask=mask)
        torch.testing.assert_close(mine(q, k, v, causal=causal, key_padding_mask=mask), expected)


@pytest.mark.slow
def test_readme_plugin_is_selected_by_name_in_a_recipe(installed_plugin: Path, tmp_path: Path) -> None:
    env = {"PYTHONPATH": os.pathsep.join([str(installed_plugin), os.environ.get("PYTHONPATH", "")])}
    args = [
        "fit",
        "--config",
        "quickstart",
        "--model.init_args.attention",
        "my_attention",
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "3",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.logger",
        "false",
    ]
    result = run_cli(*args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
