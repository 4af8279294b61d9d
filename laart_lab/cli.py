"""The ``laart-lab`` command.

Training subcommands (``fit``, ``validate``, ``test``, ``predict``) are Lightning's own, through
:class:`LaartCLI` (a ``LightningCLI``). The platform's own commands sit beside them:

* ``plugins``  lists every discovered plugin and component (``--json`` for machines);
* ``recipes``  lists the recipes shipped with laart_lab and with installed plugin packages;
* ``check``    validates a recipe and instantiates it without training, reporting every problem;
* ``generate`` samples text from a language-model checkpoint.

Plugins are loaded before any parser is built, so registered names resolve everywhere.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import yaml
from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from laart_lab import __version__, component_names
from laart_lab.recipes import list_recipes, resolve_recipe
from laart_lab.registry import PluginError, Registry, get_registry

TRAINER_SUBCOMMANDS = ("fit", "validate", "test", "predict")


# --------------------------------------------------------------------------------------------
# Training: LightningCLI with registered names, data facts and plugin provenance
# --------------------------------------------------------------------------------------------
class LaartSaveConfigCallback(SaveConfigCallback):
    """Saves the resolved ``config.yaml`` next to the logs, plus ``plugins.yaml`` with plugin versions."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # save_config runs on rank 0 only: trainer.log_dir is a collective (broadcast) and would
        # deadlock under DDP, so read the logger's directory directly
        logger = trainer.loggers[0] if trainer.loggers else None
        log_dir = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None) or trainer.default_root_dir
        if log_dir is None:
            return
        os.makedirs(log_dir, exist_ok=True)
        with open(os.path.join(log_dir, "plugins.yaml"), "w", encoding="utf-8") as handle:
            yaml.safe_dump(plugin_report(get_registry()), handle, sort_keys=False)


def _active_config(cli: LightningCLI) -> Namespace:
    return cli.config[cli.subcommand] if cli.subcommand else cli.config


def fill_data_facts(config: Namespace) -> dict[str, Any]:
    """Fill model init args that the recipe left unset from the datamodule's ``data_facts()``.

    A data module knows facts a model needs (vocabulary size, relation names). Rather than asking
    every recipe to repeat them, a data module may define ``data_facts() -> dict`` and every model
    init arg of the same name that is unset or ``None`` takes that value. The values then live in
    the model's hyper-parameters and its checkpoints.
    """
    data_spec, model_spec = config.get("data"), config.get("model")
    if not isinstance(data_spec, Namespace) or not isinstance(model_spec, Namespace):
        return {}
    data_class = component_names.import_class(data_spec.class_path)
    if not hasattr(data_class, "data_facts"):
        return {}
    init_args = data_spec.get("init_args") or Namespace()
    datamodule = data_class(**init_args.as_dict())
    facts = datamodule.data_facts()
    model_params = inspect.signature(component_names.import_class(model_spec.class_path)).parameters
    filled = {}
    model_args = model_spec.get("init_args")
    for key, value in facts.items():
        if key in model_params and (model_args is None or model_args.get(key) is None):
            if model_args is None:
                model_spec.init_args = model_args = Namespace()
            model_args[key] = value
            filled[key] = value
    return filled


class LaartCLI(LightningCLI):
    """LightningCLI for laart_lab: any LightningModule / LightningDataModule, chosen in the recipe."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        get_registry()  # import every plugin first: registered names must resolve while parsing
        component_names.install()
        kwargs.setdefault("save_config_callback", LaartSaveConfigCallback)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {"parser_mode": "yaml"})
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=list(args) if args is not None else None,
            run=run,
            **kwargs,
        )

    def before_instantiate_classes(self) -> None:
        fill_data_facts(_active_config(self))


# --------------------------------------------------------------------------------------------
# plugins / recipes / check
# --------------------------------------------------------------------------------------------
def plugin_report(registry: Registry) -> dict[str, Any]:
    """Plugins and components as plain data (``laart-lab plugins --json`` and ``plugins.yaml``)."""
    return {
        "laart_lab": __version__,
        "plugins": [
            {
                "name": record.name,
                "module": record.module,
                "distribution": record.distribution,
                "version": record.version,
                "status": record.status,
                "error": record.error,
            }
            for record in registry.plugins
        ],
        "components": [
            {
                "kind": entry.kind,
                "name": entry.name,
                "class": entry.class_path,
                "plugin": entry.plugin,
                "distribution": entry.distribution,
                "version": entry.version,
                "status": "loaded",
            }
            for entry in registry.entries()
        ],
    }


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def command_plugins(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="laart-lab plugins", description="List discovered plugins and their components.")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    args = parser.parse_args(list(argv))
    try:
        registry = get_registry()
    except PluginError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    report = plugin_report(registry)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    rows = [
        [c["kind"], c["name"], c["class"], c["distribution"], c["version"], c["status"]] for c in report["components"]
    ]
    rows += [
        [
            "(plugin)",
            p["name"],
            p["module"],
            p["distribution"],
            p["version"],
            f"failed: {p['error']}",
        ]
        for p in report["plugins"]
        if p["status"] == "failed"
    ]
    print(_table(rows, ["kind", "name", "class", "distribution", "version", "status"]))
    return 0


def command_recipes(argv: Sequence[str]) -> int:
    parser = ArgumentParser(
        prog="laart-lab recipes", description="List the recipes that ship with laart_lab and plugins."
    )
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    args = parser.parse_args(list(argv))
    recipes = list_recipes()
    if args.json:
        payload = [
            {"name": r.name, "path": str(r.path), "description": r.description, "distribution": r.distribution}
            for r in recipes
        ]
        print(json.dumps(payload, indent=2))
        return 0
    print(_table([[r.name, r.description, r.distribution] for r in recipes], ["recipe", "what it trains", "from"]))
    print("\nRun one with: laart-lab fit --config <recipe>  (a name above or a path to a YAML file)")
    return 0


def command_check(argv: Sequence[str]) -> int:
    from laart_lab.recipe_check import check_recipe

    parser = ArgumentParser(prog="laart-lab check", description="Validate a recipe and build it without training.")
    parser.add_argument("--config", required=True, help="Recipe name or path to a YAML recipe.")
    parser.add_argument("--no-instantiate", action="store_true", help="Only validate; do not build the objects.")
    args = parser.parse_args(list(argv))
    path = _recipe_path(args.config)
    problems = check_recipe(path, instantiate=not args.no_instantiate)
    if problems:
        print(f"{path}: {len(problems)} problem(s) found:", file=sys.stderr)
        for index, problem in enumerate(problems, 1):
            print(f"  {index}. {problem}", file=sys.stderr)
        return 1
    print(f"{path}: OK (parsed, validated{'' if args.no_instantiate else ' and instantiated'})")
    return 0


def command_generate(argv: Sequence[str]) -> int:
    module = importlib.import_module("laart_lab.generate")
    return int(module.main(list(argv)) or 0)


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "plugins": command_plugins,
    "recipes": command_recipes,
    "check": command_check,
    "generate": command_generate,
}


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def _recipe_path(reference: str) -> str:
    if os.path.exists(reference):
        return reference
    shipped = resolve_recipe(reference)
    return str(shipped) if shipped is not None else reference


def _resolve_config_names(argv: list[str]) -> list[str]:
    """Let ``--config quickstart`` name a shipped recipe as well as a file path."""
    resolved = list(argv)
    for index, arg in enumerate(resolved):
        if arg == "--config" and index + 1 < len(resolved):
            resolved[index + 1] = _recipe_path(resolved[index + 1])
        elif arg.startswith("--config="):
            resolved[index] = "--config=" + _recipe_path(arg.split("=", 1)[1])
    return resolved


def _precheck(argv: list[str]) -> list[str]:
    """Validate each ``--config`` recipe with the same checks as ``laart-lab check`` (no instantiation)."""
    from laart_lab.recipe_check import check_recipe

    problems: list[str] = []
    for index, arg in enumerate(argv):
        path = argv[index + 1] if arg == "--config" and index + 1 < len(argv) else None
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        if path and os.path.isfile(path):
            problems += [f"{path}: {problem}" for problem in check_recipe(path, instantiate=False)]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        return COMMANDS[args[0]](args[1:])
    if args and args[0] in ("-V", "--version"):
        print(f"laart-lab {__version__}")
        return 0
    args = _resolve_config_names(args)
    try:
        get_registry()
    except PluginError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args and args[0] in TRAINER_SUBCOMMANDS and "--print_config" not in " ".join(args):
        problems = _precheck(args)
        if problems:
            print(f"error: the recipe has {len(problems)} problem(s):", file=sys.stderr)
            for index, problem in enumerate(problems, 1):
                print(f"  {index}. {problem}", file=sys.stderr)
            return 2
    with warnings.catch_warnings():
        # our args *are* sys.argv, with recipe names resolved: LightningCLI's "args and sys.argv both given" is noise
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        LaartCLI(args)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
