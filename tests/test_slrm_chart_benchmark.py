"""The SLRM chart benchmark script: its baseline computes what viterbi_reduce does, and it writes its outputs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from laart_lab.reasoning.slrm import viterbi_reduce

pytestmark = pytest.mark.usefixtures("one_thread")  # also restores the thread count main() sets
SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "slrm_chart.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("laart_bench_slrm_chart", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_the_baseline_layout_reduces_to_the_same_chart(bench) -> None:
    generator = torch.Generator().manual_seed(0)
    table = torch.rand(6, 6, 6, generator=generator).softmax(-1)
    penalty = -2.0 * (torch.rand(6, 6, 6, generator=generator) < 0.5)
    probs = torch.rand(3, 5, 4, generator=generator).softmax(-1)
    path, lengths = probs.argmax(-1), torch.tensor([5, 2, 4])
    now = viterbi_reduce(path, lengths, table, penalty, probs)
    before = bench.reduce_over_dims_1_2(path, lengths, table, penalty, probs)
    torch.testing.assert_close(now.dist, before.dist)
    torch.testing.assert_close(now.score, before.score)
    assert now.split.keys() == before.split.keys()
    for span in now.split:
        assert torch.equal(now.split[span], before.split[span])


def test_a_small_run_writes_json_and_plot(bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "chart.json"
    argv = ["--batch", "4", "--boxes", "6", "--relations", "4", "--lengths", "2", "4", "--repeats", "1",
            "--threads", "1", "--json", str(out)]  # fmt: skip
    bench.main(argv)
    record = json.loads(out.read_text())
    assert [row["length"] for row in record["rows"]] == [2, 4]
    assert all(row["ms"] > 0 and row["ms_before"] > 0 for row in record["rows"])
    assert out.with_suffix(".png").stat().st_size > 0
    assert "| 4 |" in capsys.readouterr().out
