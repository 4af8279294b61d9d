"""Registered component names as ``class_path`` values in recipes: the one jsonargparse hook.

LightningCLI (jsonargparse) resolves a ``class_path`` without dots by the class *name* of imported
subclasses of the parameter's type. Recipes in laart_lab select components by their *registered*
plugin name instead (``class_path: linear``), so that a third-party package can ship a component
without the recipe knowing its module. :func:`install` teaches jsonargparse that: for a parameter
whose type is (or returns) a component base class, a registered name or a deprecated alias of that
kind resolves through :meth:`laart_lab.registry.Registry.lookup`, and an unknown name fails with the
registry's message (available names, closest match). Anything else falls through to jsonargparse's own
resolution, so full class paths and class names keep working.

jsonargparse has no public extension point for this, so we wrap its private
``_typehints.resolve_class_path_by_name`` (also imported by ``_from_config``). That is why
``pyproject.toml`` pins jsonargparse's minor version, and ``tests/test_component_names.py`` pins the
behaviour (and fails first if an upgrade moves the function). Nothing else in laart_lab touches
jsonargparse's private API.
"""

from __future__ import annotations

from typing import Any

from jsonargparse import _from_config, _typehints

from laart_lab.registry import UnknownComponentError, get_registry, import_class_path

#: jsonargparse's own resolver, called for everything that is not a registered name
_original_resolve = _typehints.resolve_class_path_by_name


def resolve_class_path(cls: Any, name: str) -> str:
    """``class_path`` resolution with registered names and aliases first (see module docstring)."""
    if isinstance(cls, tuple):  # a union of classes: jsonargparse tries each (and calls us back per class)
        return _original_resolve(cls, name)
    registry = get_registry()
    kind = registry.kind_of_class(cls)
    if kind is None:
        return _original_resolve(cls, name)
    class_path = registry.class_path_of(kind, name)  # a registered name, or an alias (warns)
    if class_path is not None:
        return class_path
    resolved = _original_resolve(cls, name)
    if "." not in resolved:  # neither a registered name nor an imported class name
        raise UnknownComponentError(registry.unknown_message(kind, name))
    return resolved


def import_class(class_path: str) -> Any:
    """The object a dotted ``module.Name`` path names (after :func:`resolve_class_path`); kept for callers,
    the same as :func:`laart_lab.registry.import_class_path`."""
    return import_class_path(class_path)


def install() -> None:
    """Route jsonargparse's class-name resolution through :func:`resolve_class_path` (idempotent)."""
    _typehints.resolve_class_path_by_name = resolve_class_path
    _from_config.resolve_class_path_by_name = resolve_class_path


def installed() -> bool:
    """Whether :func:`install` is in effect in both modules that call the resolver."""
    return (
        _typehints.resolve_class_path_by_name is resolve_class_path
        and _from_config.resolve_class_path_by_name is resolve_class_path
    )
