"""Registered component names as ``class_path`` values in recipes.

LightningCLI (jsonargparse) resolves a ``class_path`` without dots by the class *name* of imported
subclasses of the parameter's type. Recipes in laart_lab select components by their *registered*
plugin name instead (``class_path: linear``), so that a third-party package can ship a component
without the recipe knowing its module. :func:`install` teaches jsonargparse that: for a parameter
whose type is (or returns) a component base class, a registered name of that kind resolves to the
registered class, and an unknown name fails with the registry's message (available names, closest
match). Anything else falls through to jsonargparse's own resolution, so full class paths and
class names keep working.

jsonargparse has no public extension point for this, so we wrap its resolver function; the wrapper
is installed once, is idempotent, and ``tests/test_component_names.py`` pins the behaviour.
"""

from __future__ import annotations

import importlib
from typing import Any

from jsonargparse import _from_config, _typehints

from laart_lab.registry import UnknownComponentError, get_registry

_original_resolve = _typehints.resolve_class_path_by_name


def resolve_class_path(cls: Any, name: str) -> str:
    """``class_path`` resolution with registered names first (see module docstring)."""
    if "." in name or isinstance(cls, tuple):
        return _original_resolve(cls, name)
    registry = get_registry()
    kind = registry.kind_of_class(cls)
    if kind is None:
        return _original_resolve(cls, name)
    entry = registry.find(kind, name)
    if entry is not None:
        return entry.class_path
    resolved = _original_resolve(cls, name)
    if "." not in resolved:  # neither a registered name nor an imported class name
        raise UnknownComponentError(registry.unknown_message(kind, name))
    return resolved


def import_class(class_path: str) -> Any:
    """The object a dotted ``module.Name`` path names (after :func:`resolve_class_path`)."""
    module_name, _, class_name = class_path.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def install() -> None:
    """Route jsonargparse's class-name resolution through :func:`resolve_class_path` (idempotent)."""
    _typehints.resolve_class_path_by_name = resolve_class_path
    _from_config.resolve_class_path_by_name = resolve_class_path
