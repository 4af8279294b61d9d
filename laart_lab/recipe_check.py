"""Validate a recipe and report every problem at once (``laart-lab check``, and ``fit``'s pre-check).

jsonargparse stops at the first error it meets. Before a long run a user wants the whole list, so
this walks the recipe, leaning on jsonargparse wherever it can: the top-level keys are those of the
real ``LaartCLI`` parser (:func:`laart_lab.training_cli.recipe_keys`), each ``class_path`` is resolved
by the registry (:meth:`laart_lab.registry.Registry.resolve`: registered names, deprecated aliases,
class paths), and each plain value is validated by jsonargparse's own parser of that class (one
parser per class, built as LightningCLI builds it), key by key, so that every bad value is reported.
What this adds to jsonargparse: unknown ``init_args`` keys are listed with the component's accepted
arguments and the closest one, and nested components are checked recursively. If the recipe is clean
it is then built for real through :class:`laart_lab.training_cli.LaartCLI` (parse + instantiate, no
training) and the data module is set up, which catches what only construction can reveal (a missing
data file, a bad value).

``laart-lab fit`` runs the same check first (without the build) on the recipe files and command-line
overrides (:func:`check_command_line`); ``fit --no-check`` skips it.
"""

from __future__ import annotations

import collections.abc
import difflib
import functools
import inspect
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.loggers import Logger

from laart_lab import component_names
from laart_lab.overrides import Override, attribute, compose, config_positions, parse_overrides
from laart_lab.registry import PluginError, get_registry, import_class_path
from laart_lab.training_cli import LaartCLI, argument_error_message, recipe_keys

SPEC_KEYS = {"class_path", "init_args", "dict_kwargs"}


def load_recipe(path: str | Path) -> tuple[dict[str, Any] | None, list[str]]:
    """The recipe at ``path`` as plain data, or ``None`` and the reason it cannot be read."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        from laart_lab.recipes import list_recipes

        names = ", ".join(recipe.name for recipe in list_recipes())
        return None, [f"no recipe file at {path}. Shipped recipes (usable by name): {names}"]
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        return None, [f"{path} is not valid YAML: {err}"]
    except IsADirectoryError:
        return None, [f"{path} is a folder; give a YAML recipe file or a shipped recipe name"]
    if not isinstance(config, dict):
        return None, [f"{path} must be a YAML mapping with keys like trainer, model, data; got {type(config).__name__}"]
    return config, []


def check_recipe(path: str | Path, instantiate: bool = True, overrides: Sequence[str] = ()) -> list[str]:
    """Every problem found in the recipe at ``path`` with command-line ``overrides`` applied (empty = fine).

    A problem caused by an override starts with that override (``--model.init_args.n_head 4: ...``).
    """
    config, problems = load_recipe(path)
    if config is None:
        return problems
    parsed = parse_overrides(list(overrides), recipe_keys())
    problems = label_problems(check_config(compose([config], parsed)), parsed)
    if not problems and instantiate:
        problems += _build(Path(path), overrides)
    return problems


def check_command_line(argv: Sequence[str]) -> list[str]:
    """``fit``'s pre-check: the recipe files of ``argv`` (``fit --config A --config B --x.y v``) with its
    overrides applied, checked as ``laart-lab check`` does (without building anything)."""
    argv = list(argv)
    subcommand = argv[0] if argv and not argv[0].startswith("-") else "fit"
    configs, problems = [], []
    paths = [value for _, value in config_positions(argv)]
    for path in paths:
        config, errors = load_recipe(path)
        problems += [f"{path}: {error}" for error in errors]
        if config is not None:
            configs.append(config)
    if problems or not configs:
        return problems
    keys = recipe_keys(subcommand)
    overrides = parse_overrides(argv[1:], keys)
    found = label_problems(check_config(compose(configs, overrides), keys), overrides)
    where = paths[-1] if len(paths) == 1 else " + ".join(paths)
    return [problem if problem.startswith("--") else f"{where}: {problem}" for problem in found]


def label_problems(problems: list[str], overrides: list[Override]) -> list[str]:
    """Prefix each problem an override caused with that override, as the user typed it."""
    labelled = []
    for problem in problems:
        override = attribute(problem, overrides)
        labelled.append(f"{override.raw} (command line): {problem}" if override else problem)
    return labelled


def check_config(config: dict[str, Any], top_level_keys: set[str] | None = None) -> list[str]:
    """Every problem in a recipe given as plain data (see :func:`check_recipe`).

    ``top_level_keys``: the keys the subcommand's parser accepts (default: ``fit``'s, :func:`recipe_keys`).
    """
    problems: list[str] = []
    keys = top_level_keys if top_level_keys is not None else recipe_keys()
    for key in config:
        if key not in keys:
            problems.append(_unknown_key(key, "the recipe's top level", sorted(keys)))
    try:
        get_registry()
    except PluginError as err:
        return [str(err)]
    if isinstance(config.get("trainer"), dict):
        problems += _check_init_args(Trainer, config["trainer"], "trainer", "Trainer")
    elif config.get("trainer") is not None:
        problems.append("trainer: must be a mapping of Trainer arguments")
    data_class = None
    if "data" in config:
        data_class = _check_spec(config["data"], LightningDataModule, "data", problems)
    if "model" in config:
        skip_required = set()
        if data_class is not None and hasattr(data_class, "data_facts"):
            skip_required = {"*"}  # facts fill model args at build time; the build step checks them
        _check_spec(config["model"], LightningModule, "model", problems, skip_required=skip_required)
    else:
        problems.append("model: missing. A recipe needs a `model:` with a class_path (see `laart-lab recipes`).")

    return problems


# --------------------------------------------------------------------------------------------
def _unknown_key(key: str, where: str, accepted: list[str]) -> str:
    message = f"{where} has no argument {key!r}."
    close = difflib.get_close_matches(key, accepted, n=1, cutoff=0.6)
    if close:
        message += f" Did you mean {close[0]!r}?"
    return message + f" It accepts: {', '.join(accepted) if accepted else '(no arguments)'}."


def _check_spec(
    spec: Any,
    base: type,
    where: str,
    problems: list[str],
    skip_required: set[str] | None = None,
    given_at_call: int = 0,
) -> type | None:
    """Check one ``{class_path, init_args}`` spec against ``base``; return the resolved class.

    ``given_at_call``: for a factory hint ``Callable[[A, B], X]`` the model passes the first arguments
    itself (e.g. ``d_model, n_heads``), so the recipe need not give them.
    """
    if isinstance(spec, str):
        spec = {"class_path": spec}
    if not isinstance(spec, dict) or "class_path" not in spec:
        problems.append(
            f"{where}: expected a mapping with `class_path:` (a registered name or a class path); got {spec!r}"
        )
        return None
    for key in spec:
        if key not in SPEC_KEYS:
            problems.append(
                f"{where}: unexpected key {key!r} next to class_path; put component arguments under `init_args:`"
            )
    try:
        cls, class_path = _resolve(base, str(spec["class_path"]))
    except PluginError as err:
        problems.append(f"{where}.class_path: {err}")
        return None
    except (ImportError, AttributeError, ValueError) as err:
        problems.append(f"{where}.class_path: cannot import {spec['class_path']!r} ({err})")
        return None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        problems.append(f"{where}.class_path: {class_path} is not a {base.__name__}")
        return None
    init_args = spec.get("init_args") or {}
    if not isinstance(init_args, dict):
        problems.append(f"{where}.init_args: must be a mapping of argument names to values; got {init_args!r}")
        return cls
    if given_at_call:
        skip_required = set(list(_parameters(cls)[0])[:given_at_call])
    problems += _check_init_args(
        cls, init_args, f"{where}.init_args", _label(str(spec["class_path"]), class_path), skip_required
    )
    return cls


def _resolve(base: type, ref: str) -> tuple[type, str]:
    """The class a spec's ``class_path`` names, and its dotted path: through the registry for a component
    kind, as jsonargparse resolves it otherwise (loggers, LightningModules)."""
    registry = get_registry()
    kind = registry.kind_of_class(base)
    if kind is not None:
        cls = registry.resolve(kind, ref)
    else:
        cls = import_class_path(component_names.resolve_class_path(base, ref))
    return cls, f"{cls.__module__}.{cls.__qualname__}"


def _label(given: str, resolved: str) -> str:
    return resolved if given == resolved else f"{given} ({resolved})"


def _parameters(cls: type) -> tuple[dict[str, inspect.Parameter], bool]:
    """Named parameters of ``cls.__init__`` and whether it takes ``**kwargs``."""
    params = dict(inspect.signature(cls).parameters)
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = {
        n: p
        for n, p in params.items()
        if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    }
    return named, var_kw


def _check_init_args(
    cls: type, init_args: dict, where: str, label: str, skip_required: set[str] | None = None
) -> list[str]:
    problems: list[str] = []
    params, takes_kwargs = _parameters(cls)
    try:
        hints = typing.get_type_hints(cls.__init__)  # type: ignore[misc]
    except Exception:  # unresolvable annotations: fall back to no type checks
        hints = {}
    for key, value in init_args.items():
        if key not in params:
            if not takes_kwargs:
                problems.append(_unknown_key(key, f"{where}: {label}", sorted(params)))
            continue
        hint = hints.get(key, params[key].annotation)
        problems += _check_value(value, hint, f"{where}.{key}", owner=cls, key=key)
    if skip_required != {"*"}:
        for name, param in params.items():
            missing = param.default is inspect.Parameter.empty and name not in init_args
            if missing and param.kind is not inspect.Parameter.POSITIONAL_ONLY and name not in (skip_required or set()):
                problems.append(f"{where}: {label} needs argument {name!r}, which the recipe does not give")
    return problems


def _class_types(hint: Any) -> list[type]:
    """Classes a type hint admits as components: ``X``, ``X | None``, ``list[X]``, ``Callable[..., X]``."""
    origin = typing.get_origin(hint)
    if origin is None:
        return [hint] if isinstance(hint, type) and hint.__module__ != "builtins" and hint is not typing.Any else []
    found: list[type] = []
    if origin in (collections.abc.Callable,):
        args = typing.get_args(hint)
        return _class_types(args[-1]) if args else []
    for arg in typing.get_args(hint):
        found += _class_types(arg)
    return found


def _component_base(hint: Any) -> type | None:
    for cls in _class_types(hint):
        if issubclass(cls, (Callback, Logger)) or get_registry().kind_of_class(cls) or cls in (LightningModule,):
            return cls
    candidates = _class_types(hint)
    return candidates[0] if candidates else None


def _factory_arity(hint: Any) -> int:
    """How many positional arguments a ``Callable[[...], X]`` (or ``Optional`` of one) hint supplies."""
    origin = typing.get_origin(hint)
    if origin is collections.abc.Callable:
        args = typing.get_args(hint)
        return len(args[0]) if args and isinstance(args[0], list) else 0
    return max((_factory_arity(arg) for arg in typing.get_args(hint)), default=0) if origin is not None else 0


def _check_value(value: Any, hint: Any, where: str, owner: type, key: str) -> list[str]:
    is_spec = isinstance(value, dict) and "class_path" in value
    items = (
        value
        if isinstance(value, list) and value and all(isinstance(v, dict) and "class_path" in v for v in value)
        else None
    )
    base = _component_base(hint) if (is_spec or items) else None
    if base is not None:
        problems: list[str] = []
        given_at_call = _factory_arity(hint)
        for index, item in enumerate(items or [value]):
            _check_spec(item, base, f"{where}[{index}]" if items else where, problems, given_at_call=given_at_call)
        return problems
    if hint is inspect.Parameter.empty or hint is typing.Any:
        return []
    parser, keys = _class_parser(owner)
    if parser is None or key not in keys:  # jsonargparse cannot describe it on its own: left to the build step
        return []
    try:
        # required arguments are skipped: this checks one value; missing ones are reported separately
        parser.validate(Namespace(**{key: value}), skip_required=True)
    except Exception as err:
        reason = argument_error_message(err).replace(f'Parser key "{key}":', "").strip()
        return [f"{where}: {value!r} is not valid here ({reason})"]
    return []


@functools.cache
def _class_parser(cls: type) -> tuple[ArgumentParser | None, frozenset[str]]:
    """jsonargparse's parser of ``cls``'s arguments (built as LightningCLI builds it, once per class) and
    the argument names it has."""
    parser = ArgumentParser(exit_on_error=False)
    try:
        parser.add_class_arguments(cls, fail_untyped=False)
        keys = frozenset(key.split(".", 1)[0] for key in parser.get_defaults().keys())  # noqa: SIM118 (a Namespace is not iterable)
    except Exception:  # jsonargparse cannot describe this signature
        return None, frozenset()
    return parser, keys


def _build(path: Path, overrides: Sequence[str] = ()) -> list[str]:
    """Parse and instantiate the recipe through the real CLI, then set up its data."""
    try:
        cli = LaartCLI(["--config", str(path), *overrides, "--trainer.logger", "false"], run=False)
    except SystemExit as exit_:
        return [f"building the recipe failed (jsonargparse exited with {exit_.code}; its message is above)"]
    except Exception as err:
        if type(err).__name__ == "ArgumentError":
            return [f"building the recipe failed: {argument_error_message(err)}"]
        return [f"building the recipe failed: {type(err).__name__}: {err}"]
    try:
        if cli.datamodule is not None:
            cli.datamodule.prepare_data()
            cli.datamodule.setup("fit")
    except Exception as err:
        return [f"setting up the data failed: {type(err).__name__}: {err}"]
    return []
