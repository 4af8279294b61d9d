"""Built-in plugin that registers the recipes folder shipped with laart_lab."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from laart_lab.hookspecs import hookimpl

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def shipped_recipe_dir() -> Path:
    """``laart_lab/recipes`` in an installed wheel; ``<checkout>/recipes`` in a source/editable install."""
    inside_package = PACKAGE_ROOT / "recipes"
    return inside_package if inside_package.is_dir() else PACKAGE_ROOT.parent / "recipes"


@hookimpl
def register_recipes(register: Callable[[Path], None]) -> None:
    register(shipped_recipe_dir())
