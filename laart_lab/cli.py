"""The ``laart-lab`` command.

Training subcommands (``fit``, ``validate``, ``test``, ``predict``) are Lightning's own, through
:class:`laart_lab.training_cli.LaartCLI` (a ``LightningCLI``). The platform's own commands sit beside them:

* ``plugins``  lists every discovered plugin and component (``--json`` for machines);
* ``recipes``  lists the recipes shipped with laart_lab and with installed plugin packages;
* ``check``    validates a recipe (with the same overrides as ``fit``) and builds it without training;
* ``generate`` samples text from a language-model checkpoint.

User errors (a bad path, a corrupt file, a malformed row, a wrong checkpoint, a mistaken override)
print one ``error:`` line naming the file or argument and the fix, and exit 1 (2 for command-line
usage); ``--debug`` or ``LAART_LAB_DEBUG=1`` shows the traceback. Lightning and torch are imported
only by the commands that need them, so ``--help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from laart_lab import __version__
from laart_lab.errors import DEBUG_ENV, UsageError, debug_enabled, user_error_types

TRAINER_SUBCOMMANDS = ("fit", "validate", "test", "predict")

SUBCOMMAND_HELP = {
    "fit": "train a recipe (Lightning's fit); --ckpt_path last resumes its newest checkpoint; --no-check skips "
    "the recipe pre-check",
    "validate": "evaluate a checkpoint on the validation split (--config RECIPE --ckpt_path CKPT)",
    "test": "evaluate a checkpoint on the test split (--config RECIPE --ckpt_path CKPT)",
    "predict": "run a checkpoint's predict_step over the predict data (--config RECIPE --ckpt_path CKPT)",
    "check": "validate a recipe (and overrides) and build it without training; every problem at once",
    "recipes": "list the recipes shipped with laart_lab and installed plugins",
    "plugins": "list every plugin and component: kind, name, class, distribution, version, status",
    "generate": "sample text from a language-model (CharLM) checkpoint",
}


def __getattr__(name: str) -> Any:
    # LaartCLI and friends need Lightning: import them only when asked for (keeps --help/--version fast)
    if name in ("LaartCLI", "LaartSaveConfigCallback", "fill_data_facts"):
        from laart_lab import training_cli

        return getattr(training_cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def usage() -> str:
    width = max(len(name) for name in SUBCOMMAND_HELP)
    lines = [
        "usage: laart-lab [-h] [-V] [--debug] SUBCOMMAND ...",
        "",
        "LAART Lab: train and evaluate recipes of the LAART platform (a LightningCLI with plugins).",
        "",
        "subcommands:",
        *(f"  {name.ljust(width)}  {text}" for name, text in SUBCOMMAND_HELP.items()),
        "",
        "options:",
        "  -h, --help     show this message; `laart-lab SUBCOMMAND --help` shows a subcommand's options",
        "  -V, --version  print the version",
        "  --debug        show tracebacks of user errors (also LAART_LAB_DEBUG=1)",
        "",
        "example: laart-lab fit --config quickstart    (then: laart-lab fit --config quickstart --ckpt_path last)",
    ]
    return "\n".join(lines)


def plugin_report(registry: Any) -> dict[str, Any]:
    """Plugins and components as plain data (``laart-lab plugins --json``); see :meth:`Registry.report`."""
    return registry.report()


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def command_plugins(argv: Sequence[str]) -> int:
    from jsonargparse import ArgumentParser

    from laart_lab.registry import PluginError, get_registry

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
    from jsonargparse import ArgumentParser

    from laart_lab.recipes import list_recipes

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
    import argparse

    from laart_lab.recipe_check import check_recipe
    from laart_lab.recipes import recipe_path

    parser = argparse.ArgumentParser(
        prog="laart-lab check",
        description="Validate a recipe and build it without training. Takes the same overrides as `fit` "
        "(e.g. --data.init_args.path FILE); every problem is reported at once.",
    )
    parser.add_argument("--config", required=True, help="Recipe name or path to a YAML recipe.")
    parser.add_argument("--no-instantiate", action="store_true", help="Only validate; do not build the objects.")
    args, overrides = parser.parse_known_args(list(argv))
    path = recipe_path(args.config, "--config")
    problems = check_recipe(path, instantiate=not args.no_instantiate, overrides=overrides)
    if problems:
        print(f"{path}: {len(problems)} problem(s) found:", file=sys.stderr)
        for index, problem in enumerate(problems, 1):
            print(f"  {index}. {problem}", file=sys.stderr)
        return 1
    print(f"{path}: OK (parsed, validated{'' if args.no_instantiate else ' and instantiated'})")
    return 0


def command_generate(argv: Sequence[str]) -> int:
    from laart_lab import generate

    return int(generate.main(list(argv)) or 0)


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "plugins": command_plugins,
    "recipes": command_recipes,
    "check": command_check,
    "generate": command_generate,
}


# --------------------------------------------------------------------------------------------
# recipes on the command line
# --------------------------------------------------------------------------------------------
def _resolve_config_names(argv: list[str]) -> list[str]:
    """Let ``--config quickstart`` name a shipped recipe as well as a file path."""
    from laart_lab.overrides import config_positions
    from laart_lab.recipes import recipe_path

    resolved = list(argv)
    for index, value in config_positions(resolved):
        path = recipe_path(value)
        resolved[index] = path if resolved[index] == value else "--config=" + path
    return resolved


NO_CHECK = "--no-check"  # `fit --no-check`: skip the recipe pre-check (jsonargparse still validates while parsing)


def _wants_precheck(args: list[str]) -> bool:
    """Whether a trainer subcommand runs the recipe pre-check: not for help, ``--print_config`` or ``--no-check``."""
    for arg in args:
        option = arg.split("=", 1)[0]
        if option in ("-h", "--help", "--print_config", NO_CHECK):
            return False
    return True


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def _run_trainer_subcommand(args: list[str]) -> int:
    args = _resolve_config_names(args)
    from laart_lab.registry import get_registry

    get_registry()
    precheck = _wants_precheck(args)
    args = [arg for arg in args if arg != NO_CHECK]
    if precheck:
        from laart_lab.recipe_check import check_command_line

        problems = check_command_line(args)
        if problems:
            if len(problems) == 1:
                raise UsageError(problems[0])
            print(f"error: the recipe has {len(problems)} problem(s):", file=sys.stderr)
            for index, problem in enumerate(problems, 1):
                print(f"  {index}. {problem}", file=sys.stderr)
            return 2
    import warnings

    from laart_lab.training_cli import LaartCLI, argument_error_message

    try:
        with warnings.catch_warnings():
            # our args *are* sys.argv with recipe names resolved: LightningCLI's "args and sys.argv" note is noise
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            LaartCLI(args)
    except SystemExit as exit_:
        if type(exit_).__name__ != "SIGTERMException":
            raise
        return _report_interrupt(args)
    except Exception as err:
        if type(err).__name__ == "ArgumentError":
            raise UsageError(
                f"{argument_error_message(err)}. Run `laart-lab {args[0]} --help` for every option"
            ) from err
        raise
    return 0


def _report_interrupt(args: list[str]) -> int:
    from laart_lab.callbacks.interrupt import last_interrupt
    from laart_lab.overrides import config_positions

    which = last_interrupt.get("signal") or "SIGTERM"
    path = last_interrupt.get("path")
    configs = " ".join(f"--config {value}" for _, value in config_positions(args))
    if path:
        print(
            f"stopped by {which} at step {last_interrupt.get('step')}; resumable checkpoint: {path}\n"
            f"resume with: laart-lab {args[0]} {configs} --ckpt_path last",
            file=sys.stderr,
        )
    else:
        print(f"stopped by {which} before the first training step; nothing to resume", file=sys.stderr)
    return 130 if which == "SIGINT" else 143


def _dispatch(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"laart-lab {__version__}")
        return 0
    if args[0] in COMMANDS:
        return COMMANDS[args[0]](args[1:])
    if args[0] in TRAINER_SUBCOMMANDS:
        return _run_trainer_subcommand(args)
    close = difflib.get_close_matches(args[0], list(SUBCOMMAND_HELP), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UsageError(f"unknown subcommand {args[0]!r}.{hint} Subcommands: {', '.join(SUBCOMMAND_HELP)}")


def _describe(err: BaseException) -> str:
    import zipfile

    message = str(err).strip() or type(err).__name__
    if isinstance(err, zipfile.BadZipFile):
        message = f"a zip archive is damaged: {message}; re-download or re-copy the data file"
    if isinstance(err, FileNotFoundError) and err.filename and str(err.filename) not in message:
        message = f"{err.filename}: {message}"
    return message


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``laart-lab`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or debug_enabled()
    args = [arg for arg in args if arg != "--debug"]
    if debug:
        os.environ[DEBUG_ENV] = "1"  # for the subcommands that report their own errors
    try:
        return _dispatch(args)
    except BrokenPipeError:
        # the reader (e.g. `| head`) closed the pipe: stop quietly, and keep Python's exit flush quiet too
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        if debug:
            raise
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if debug or not isinstance(err, user_error_types()):
            raise
        print(f"error: {_describe(err)}", file=sys.stderr)
        return 2 if isinstance(err, UsageError) else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
