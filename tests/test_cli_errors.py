"""User mistakes at the command line: one clear line naming the file or argument and the fix, no traceback.

Exit status 2 for usage (bad overrides, unknown recipe names), 1 otherwise (files, data, checkpoints);
``--debug`` shows the traceback. Also: ``--help`` lists every subcommand, and output piped into a reader
that stops early (``| head``) ends quietly.
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from laart_lab.cli import SUBCOMMAND_HELP
from tests.conftest import run_cli


def one_line_error(result: subprocess.CompletedProcess, code: int, *expected: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def test_help_lists_every_subcommand_in_one_line_each() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    listed = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ") and line.split()}
    for name in ("fit", "validate", "test", "predict", "check", "recipes", "plugins", "generate"):
        assert name in listed and len(listed[name].split()) > 2, result.stdout
    assert set(SUBCOMMAND_HELP) >= {"fit", "check", "recipes", "plugins", "generate"}


def test_output_piped_into_a_reader_that_stops_early_ends_quietly() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "laart_lab", "plugins", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()  # like `| head -1`: read a line, then close the pipe
    process.stdout.close()
    stderr = process.stderr.read().decode()
    process.wait(timeout=120)
    assert "BrokenPipeError" not in stderr and "Traceback" not in stderr, stderr
    assert process.returncode == 0


def test_misspelt_override_gets_the_recipe_files_suggestion_and_accepted_arguments(tmp_path: Path) -> None:
    result = run_cli("fit", "--config", "quickstart", "--model.init_args.n_head", "4", cwd=tmp_path)
    line = one_line_error(result, 2, "--model.init_args.n_head 4", "Did you mean 'n_heads'?", "It accepts:")
    assert "d_model" in line and "usage:" not in result.stderr
    result = run_cli("fit", "--config", "quickstart", "--model.init_args.attention", "softmaxx", cwd=tmp_path)
    one_line_error(result, 2, "--model.init_args.attention softmaxx", "Did you mean 'softmax'?")
    assert not (tmp_path / "runs").exists()


def test_misspelt_recipe_name_suggests_the_closest(tmp_path: Path) -> None:
    result = run_cli("fit", "--config", "quickstrat", cwd=tmp_path)
    one_line_error(result, 2, "quickstrat", "Did you mean 'quickstart'?")


def test_check_accepts_the_same_overrides_as_fit(tmp_path: Path) -> None:
    result = run_cli("check", "--config", "quickstart", "--data.init_args.seq_len", "12", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_cli("check", "--config", "quickstart", "--data.init_args.seq_lenn", "12", cwd=tmp_path)
    assert result.returncode == 1 and "Did you mean 'seq_len'?" in result.stderr
    missing = tmp_path / "missing.txt"
    result = run_cli("check", "--config", "charlm_shakespeare_softmax_cpu", "--data.init_args.path", str(missing))
    assert result.returncode == 1 and str(missing) in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A (tiny) classifier checkpoint, a truncated copy, and a CharLM-kind checkpoint, all plain data."""
    folder = tmp_path_factory.mktemp("ckpts")
    classifier = {
        "state_dict": {"w": torch.zeros(2)},
        "hyper_parameters": {"_class_path": "laart_lab.models.classifier.SequenceClassifier"},
        "global_step": 3,
        "epoch": 0,
    }
    paths = {"classifier": folder / "classifier.ckpt", "truncated": folder / "truncated.ckpt"}
    torch.save(classifier, paths["classifier"])
    data = paths["classifier"].read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["charlm"] = folder / "charlm.ckpt"
    torch.save({**classifier, "hyper_parameters": {"_class_path": "laart_lab.models.charlm.CharLM"}}, paths["charlm"])
    return paths


def test_truncated_checkpoint_is_one_line_naming_the_file(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    path = str(checkpoints["truncated"])
    one_line_error(run_cli("test", "--config", "quickstart", "--ckpt_path", path, cwd=tmp_path), 1, path, "truncated")
    one_line_error(run_cli("generate", "--ckpt_path", path), 1, path, "truncated")


def test_wrong_kind_of_checkpoint_names_what_it_holds(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    result = run_cli("generate", "--ckpt_path", str(checkpoints["classifier"]))
    one_line_error(result, 1, str(checkpoints["classifier"]), "SequenceClassifier", "CharLM")
    result = run_cli("test", "--config", "quickstart", "--ckpt_path", str(checkpoints["charlm"]), cwd=tmp_path)
    one_line_error(result, 1, str(checkpoints["charlm"]), "laart_lab.models.charlm.CharLM", "SequenceClassifier")


def test_debug_shows_the_traceback(checkpoints: dict[str, Path]) -> None:
    result = run_cli("generate", "--ckpt_path", str(checkpoints["truncated"]), "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr and "CheckpointError" in result.stderr
    result = run_cli("generate", "--ckpt_path", str(checkpoints["truncated"]), env={"LAART_LAB_DEBUG": "1"})
    assert "Traceback" in result.stderr


# ------------------------------------------------------------------------------------------------
# data files given to fit
# ------------------------------------------------------------------------------------------------
def test_text_data_errors_at_fit_are_one_line(tmp_path: Path) -> None:
    empty, binary = tmp_path / "empty.txt", tmp_path / "binary.txt"
    empty.write_text("")
    binary.write_bytes(bytes(range(256)) * 4)
    for path in (tmp_path / "missing.txt", empty, binary):
        args = ["fit", "--config", "charlm_shakespeare_softmax_cpu", "--data.init_args.path", str(path)]
        one_line_error(
            run_cli(*args, "--data.init_args.cache_dir", str(tmp_path / "cache"), cwd=tmp_path), 1, str(path)
        )


def _clutrr_zip(path: Path, corrupt_crc: bool = False) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("1.2,1.3_train.csv", "id,story,query,target\n" + "x,y,z,w\n" * 50)
        archive.writestr("1.2_test.csv", "id,story,query,target\nx,y,z,w\n")
    data = bytearray(buffer.getvalue())
    if corrupt_crc:
        offset = data.index(b"x,y,z,w")
        data[offset] = ord("X")  # same length, wrong CRC
    path.write_bytes(bytes(data))
    return path


def test_clutrr_zip_errors_at_fit_are_one_line_naming_the_zip(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a zip at all")
    bad_crc = _clutrr_zip(tmp_path / "bad_crc.zip", corrupt_crc=True)
    for path in (garbage, bad_crc):
        args = ["fit", "--config", "clutrr_slrm", "--data.init_args.path", str(path)]
        one_line_error(run_cli(*args, cwd=tmp_path), 1, str(path))
