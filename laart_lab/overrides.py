"""Command-line overrides (``--model.init_args.n_heads 4``) applied to a recipe's YAML, for checking.

jsonargparse parses and applies overrides for real. Before it does, ``laart-lab`` composes the same
recipe as plain data (recipe files merged in order, then each ``--a.b.c value``) so that
:func:`laart_lab.recipe_check.check_config` reports a mistaken override exactly as it reports the same
mistake in a recipe file (the component, its accepted arguments, the closest name). Arguments this
does not understand (``--trainer.callbacks+=...``, ``--print_config``) are left to jsonargparse.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import yaml

# options of the trainer subcommands that are not recipe keys (jsonargparse handles them)
NON_RECIPE_OPTIONS = {"--config", "--print_config", "-c", "--help", "-h", "--no-check"}


@dataclass(frozen=True)
class Override:
    key: str  # dotted, without the leading "--"
    value: Any
    raw: str  # as given, for messages


def config_positions(argv: list[str]) -> list[tuple[int, str]]:
    """(index of the value, value) of every ``--config X`` / ``--config=X`` / ``-c X`` in ``argv``."""
    found = []
    for index, arg in enumerate(argv):
        if arg in ("--config", "-c") and index + 1 < len(argv):
            found.append((index + 1, argv[index + 1]))
        elif arg.startswith("--config="):
            found.append((index, arg.split("=", 1)[1]))
    return found


def parse_overrides(argv: list[str], top_level: set[str]) -> list[Override]:
    """The ``--key value`` / ``--key=value`` pairs in ``argv`` whose first key part is a recipe key."""
    found: list[Override] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if not arg.startswith("--") or arg.split("=", 1)[0] in NON_RECIPE_OPTIONS:
            if arg in ("--config", "-c", "--print_config") and index < len(argv) and not argv[index].startswith("-"):
                index += 1
            continue
        key, has_value, value = arg[2:].partition("=")
        if "+" in key or key.split(".", 1)[0] not in top_level:
            continue
        if not has_value:
            if index < len(argv) and not argv[index].startswith("--"):
                value = argv[index]
                index += 1
            else:
                value = "true"  # a bare flag, as jsonargparse reads it
        found.append(Override(key, _parse_value(value), arg if has_value else f"{arg} {value}"))
    return found


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def deep_merge(base: Any, update: Any) -> Any:
    if isinstance(base, dict) and isinstance(update, dict):
        merged = dict(base)
        for key, value in update.items():
            merged[key] = deep_merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(update)


def apply_override(config: dict[str, Any], override: Override) -> None:
    """Set ``override.key`` in ``config``, following jsonargparse's conventions for components.

    Inside a ``{class_path, init_args}`` spec, a key other than ``class_path``/``init_args`` is an
    init argument (``--model.n_heads`` = ``--model.init_args.n_heads``); a plain string given for a
    spec selects its class (``--model.init_args.attention linear``).
    """
    parts = override.key.split(".")
    node: Any = config
    for part in parts[:-1]:
        node = _descend(node, part)
    last = parts[-1]
    node = _container(node, last)
    current = node.get(last)
    if _is_spec(current) and isinstance(override.value, str):
        node[last] = {"class_path": override.value}  # another class: its old init_args do not apply
    elif last == "class_path" and current != override.value:
        node[last] = override.value
        node.pop("init_args", None)
    else:
        node[last] = override.value


SPEC_KEYS = ("class_path", "init_args", "dict_kwargs")


def _container(node: dict[str, Any], key: str) -> dict[str, Any]:
    """The mapping where ``key`` lives in ``node`` (a spec's init_args for an init argument)."""
    if _is_spec(node) and key not in SPEC_KEYS:
        if not isinstance(node.get("init_args"), dict):
            node["init_args"] = {}
        return node["init_args"]
    return node


class _LeftToJsonargparse(Exception):
    """An override this module does not model (e.g. into a list); jsonargparse applies and checks it."""


def _descend(node: dict[str, Any], part: str) -> dict[str, Any]:
    node = _container(node, part)
    child = node.get(part)
    if isinstance(child, list):  # `--trainer.callbacks.x` after `--trainer.callbacks+=...`
        raise _LeftToJsonargparse(part)
    if isinstance(child, str) and part != "class_path":
        child = {"class_path": child}  # a shorthand spec (`attention: softmax`) gains init_args
    elif not isinstance(child, dict):
        child = {}
    node[part] = child
    return child


def _is_spec(node: Any) -> bool:
    return isinstance(node, dict) and "class_path" in node


def compose(configs: list[dict[str, Any]], overrides: list[Override]) -> dict[str, Any]:
    """The recipe that ``--config A --config B --x.y v ...`` describes, as plain data."""
    merged: dict[str, Any] = {}
    for config in configs:
        merged = deep_merge(merged, config)
    for override in overrides:
        try:
            apply_override(merged, override)
        except _LeftToJsonargparse:
            continue
    return merged


def attribute(problem: str, overrides: list[Override]) -> Override | None:
    """The override a ``check_config`` problem is about, if any (so the message can name the argument)."""
    for override in reversed(overrides):
        parts = override.key.split(".")
        candidates = {override.key, ".".join(p for p in parts if p != "init_args")}
        parent, leaf = ".".join(parts[:-1]), parts[-1]
        if any(problem.startswith((c + ":", c + " ", c + ".")) for c in candidates):
            return override
        at_parent = problem.startswith(parent + ":") or problem.startswith(parent + ".init_args:")
        if parent and at_parent and f"{leaf!r}" in problem:
            return override
        if not parent and f"{leaf!r}" in problem and problem.startswith("the recipe's top level"):
            return override
    return None
