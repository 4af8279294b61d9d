"""The laart-lab command end to end: quickstart training, recipes, check, plugin selection, errors."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from laart_lab.recipe_check import check_recipe
from laart_lab.registry import get_registry
from tests.conftest import ECHO_PLUGIN, REPO_ROOT, run_cli

QUICK = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "20", "--trainer.limit_val_batches", "4"]


def quickstart_variant(tmp_path: Path, **model_overrides) -> Path:
    recipe = yaml.safe_load((REPO_ROOT / "recipes" / "quickstart.yaml").read_text())
    recipe["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    recipe["model"]["init_args"].update(model_overrides)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.slow
def test_quickstart_trains_and_writes_events_checkpoint_and_config(tmp_path: Path) -> None:
    recipe = quickstart_variant(tmp_path)
    result = run_cli("fit", "--config", str(recipe), *QUICK, "--trainer.log_every_n_steps", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "quickstart" / "version_0"
    events = EventAccumulator(str(run_dir))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "val/loss", "val/acc"} <= set(scalars)
    losses = [event.value for event in events.Scalars("train/loss")]
    assert losses[-1] < losses[0]
    checkpoints = list((run_dir / "checkpoints").glob("*.ckpt"))
    assert checkpoints
    checkpoint = torch.load(checkpoints[0], weights_only=True)  # no arbitrary unpickling
    assert checkpoint["hyper_parameters"]["attention"]["class_path"].endswith("SoftmaxAttention")
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["init_args"]["d_model"] == 64
    plugins = yaml.safe_load((run_dir / "plugins.yaml").read_text())
    assert any(p["name"] == "builtin_attention" and p["version"] for p in plugins["plugins"])
    # the saved config (written without a second validation) is a recipe the CLI takes back as it is
    again = run_cli(
        "validate", "--config", str(run_dir / "config.yaml"), "--ckpt_path", str(checkpoints[0]), cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "val/acc" in again.stdout


def test_the_config_is_saved_without_validating_it_again() -> None:
    from jsonargparse import Namespace

    from laart_lab.training_cli import LaartSaveConfigCallback

    class RecordingParser:
        prog = "laart-lab"

        def __init__(self) -> None:
            self.saves: list[dict] = []

        def save(self, *args: object, **kwargs: object) -> None:
            self.saves.append(kwargs)

    parser = RecordingParser()
    callback = LaartSaveConfigCallback(parser, Namespace(), overwrite=True)  # type: ignore[arg-type]
    callback.parser.save(Namespace(), "config.yaml", skip_none=False, overwrite=True)  # as Lightning's setup calls it
    assert parser.saves == [{"skip_validation": True, "skip_none": False, "overwrite": True}]
    assert callback.parser.prog == "laart-lab"  # everything else is the parser's


@pytest.mark.slow
def test_third_party_plugin_selected_by_name_from_a_recipe(tmp_path: Path) -> None:
    recipe = quickstart_variant(tmp_path, attention={"class_path": "sliding_window", "init_args": {"window": 4}})
    result = run_cli("fit", "--config", str(recipe), *QUICK, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    config = yaml.safe_load((tmp_path / "runs" / "quickstart" / "version_0" / "config.yaml").read_text())
    assert config["model"]["init_args"]["attention"] == {
        "class_path": "laart_example_plugin.SlidingWindowAttention",
        "init_args": {"window": 4},
    }


def test_bad_init_argument_names_the_component_and_lists_its_arguments(tmp_path: Path) -> None:
    recipe = quickstart_variant(tmp_path, attention={"class_path": "sliding_window", "init_args": {"windw": 4}})
    result = run_cli("fit", "--config", str(recipe), cwd=tmp_path)
    assert result.returncode == 2
    assert "sliding_window (laart_example_plugin.SlidingWindowAttention) has no argument 'windw'" in result.stderr
    assert "Did you mean 'window'? It accepts: window." in result.stderr
    assert not (tmp_path / "runs").exists()


def test_unknown_component_name_in_a_recipe_suggests_the_closest(tmp_path: Path) -> None:
    recipe = quickstart_variant(tmp_path, attention={"class_path": "sofmax"})
    result = run_cli("fit", "--config", str(recipe), cwd=tmp_path)
    assert result.returncode == 2
    assert "no attention named 'sofmax' is registered. Did you mean 'softmax'?" in result.stderr


def test_check_reports_every_problem_at_once(tmp_path: Path) -> None:
    bad = {
        "trainer": {"max_stepz": 3},
        "model": {
            "class_path": "laart_lab.models.classifier.SequenceClassifier",
            "init_args": {"attention": {"class_path": "sofmax"}, "d_model": "big", "n_layer": 2},
        },
        "data": {"class_path": "marked_tokens"},
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    problems = check_recipe(path)
    joined = "\n".join(problems)
    assert len(problems) == 5, joined
    for expected in ("'max_stepz'", "'sofmax'", "'big'", "'n_layer'", "'marked_tokens'"):
        assert expected in joined
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 1 and "5 problem(s)" in result.stderr


def test_check_builds_a_good_recipe_without_training(tmp_path: Path) -> None:
    result = run_cli("check", "--config", "quickstart", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OK (parsed, validated and instantiated)" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_every_shipped_recipe_validates() -> None:
    for recipe in sorted((REPO_ROOT / "recipes").glob("*.yaml")):
        assert check_recipe(recipe, instantiate=False) == [], recipe.name


def test_recipes_lists_shipped_recipes_with_descriptions() -> None:
    result = run_cli("recipes", "--json")
    assert result.returncode == 0, result.stderr
    recipes = {recipe["name"]: recipe for recipe in json.loads(result.stdout)}
    assert recipes["quickstart"]["description"].startswith("Quickstart:")
    assert recipes["quickstart"]["distribution"] == "laart-lab"


def test_print_config_shows_the_resolved_component(tmp_path: Path) -> None:
    result = run_cli("fit", "--config", "quickstart", "--print_config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    config = yaml.safe_load(result.stdout)
    module_name, _, class_name = config["model"]["init_args"]["attention"]["class_path"].rpartition(".")
    assert getattr(importlib.import_module(module_name), class_name) is get_registry().get("attention", "softmax").cls
    assert config["data"]["class_path"] == "laart_lab.data.synthetic.MarkedTokenDataModule"


def test_plugins_table_and_version() -> None:
    table = run_cli("plugins")
    assert table.returncode == 0
    header = table.stdout.splitlines()[0].split()
    assert header == ["kind", "name", "class", "distribution", "version", "status"]
    assert run_cli("--version").stdout.strip().startswith("laart-lab ")


CRASHING_CALLBACK = """
import laart_lab
from lightning.pytorch import Callback

class CrashAt(Callback):
    def __init__(self, step: int = 5) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            raise RuntimeError("simulated failure in the middle of training")

@laart_lab.hookimpl
def register_callback(register):
    register("crash_at", CrashAt)
"""


@pytest.mark.slow
def test_a_failed_run_keeps_its_logs_and_an_exception_checkpoint(tmp_path: Path, fake_site) -> None:
    fake_site("laart-crasher", "0.1", {"crasher": "crasher_plugin"}, {"crasher_plugin": CRASHING_CALLBACK})
    recipe = yaml.safe_load(quickstart_variant(tmp_path).read_text())
    recipe["trainer"]["callbacks"].append({"class_path": "crash_at", "init_args": {"step": 12}})
    recipe["trainer"]["log_every_n_steps"] = 2
    path = tmp_path / "crashing.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = run_cli("fit", "--config", str(path), cwd=tmp_path)
    assert result.returncode != 0 and "simulated failure" in result.stderr
    run_dir = tmp_path / "runs" / "quickstart" / "version_0"
    assert (run_dir / "config.yaml").exists()
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert len(events.Scalars("train/loss")) >= 5
    saved = torch.load(run_dir / "checkpoints" / "interrupted.ckpt", weights_only=True)  # in the run's own folder
    assert saved["global_step"] == 12


@pytest.mark.slow
def test_test_and_predict_subcommands_run_from_a_checkpoint(tmp_path: Path) -> None:
    recipe = quickstart_variant(tmp_path)
    assert run_cli("fit", "--config", str(recipe), *QUICK, cwd=tmp_path).returncode == 0
    checkpoint = next((tmp_path / "runs" / "quickstart" / "version_0" / "checkpoints").glob("last.ckpt"))
    tested = run_cli("test", "--config", str(recipe), "--ckpt_path", str(checkpoint), cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr[-2000:]
    assert "test/acc" in tested.stdout
    predicted = run_cli(
        "predict",
        "--config",
        str(recipe),
        "--ckpt_path",
        str(checkpoint),
        "--trainer.limit_predict_batches",
        "2",
        cwd=tmp_path,
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]


def test_fit_no_check_skips_the_recipe_pre_check(tmp_path: Path) -> None:
    args = ["fit", "--config", "quickstart", "--model.init_args.n_head", "4"]
    checked = run_cli(*args, cwd=tmp_path)
    assert checked.returncode == 2 and "It accepts:" in checked.stderr  # the pre-check's wording
    unchecked = run_cli(*args, "--no-check", cwd=tmp_path)
    assert unchecked.returncode == 2 and "n_head" in unchecked.stderr  # jsonargparse still rejects it...
    assert "It accepts:" not in unchecked.stderr and "Traceback" not in unchecked.stderr  # ...without the pre-check
    assert not (tmp_path / "runs").exists()


def test_the_pre_check_is_skipped_for_print_config_and_help_only() -> None:
    from laart_lab.cli import _wants_precheck

    assert _wants_precheck(["fit", "--config", "x.yaml", "--trainer.default_root_dir", "runs--print_config"])
    assert _wants_precheck(["fit", "--config", "x.yaml"])
    for skip in (["--print_config"], ["--print_config=skip_null"], ["--help"], ["-h"], ["--no-check"]):
        assert not _wants_precheck(["fit", "--config", "x.yaml", *skip]), skip


ECHO_V1 = ECHO_PLUGIN
# release 2 renames the component and moves its class; the aliases keep release 1's recipes and checkpoints
ECHO_V2 = ECHO_V1.replace('register("echo", Echo)', 'register("echo2", Echo, aliases=["echo", "echo_v1.Echo"])')


@pytest.mark.slow
def test_a_renamed_plugin_keeps_old_recipes_and_checkpoints_loading(tmp_path: Path, fake_site) -> None:
    site = fake_site("laart-echo", "1.0", {"echo": "echo_v1"}, {"echo_v1": ECHO_V1})
    recipe = quickstart_variant(tmp_path, attention={"class_path": "echo"})
    trained = run_cli("fit", "--config", str(recipe), *QUICK, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    checkpoint = next((tmp_path / "runs" / "quickstart" / "version_0" / "checkpoints").glob("last.ckpt"))
    saved = torch.load(checkpoint, weights_only=True)["hyper_parameters"]["attention"]["class_path"]
    assert saved == "echo_v1.Echo"  # the checkpoint holds release 1's class path
    for path in [site / "echo_v1.py", *site.glob("laart_echo-*.dist-info")]:  # upgrade to release 2
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    fake_site("laart-echo", "2.0", {"echo": "echo_v2"}, {"echo_v2": ECHO_V2})
    tested = run_cli("test", "--config", str(recipe), "--ckpt_path", str(checkpoint), cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert "test/acc" in tested.stdout
    assert "attention 'echo' is a deprecated name of 'echo2'" in tested.stderr
    assert "attention 'echo_v1.Echo' is a deprecated name of 'echo2'" in tested.stderr
    listed = run_cli("plugins")
    assert any(
        line.split()[:2] == ["attention", "echo"] and "deprecated" in line for line in listed.stdout.splitlines()
    )
