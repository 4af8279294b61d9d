"""Recipes: the YAML files that ship with laart_lab and with installed plugin packages.

Plugins register recipe folders through the ``register_recipes`` hook. A recipe's one-line
description is the first comment line of the file. ``laart-lab fit --config NAME`` accepts a recipe
name (file stem) wherever a path is expected.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

from laart_lab.errors import UsageError
from laart_lab.registry import Registry, get_registry


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    description: str
    distribution: str


def describe(path: Path) -> str:
    """The first ``#`` comment line of a recipe, or an empty string."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            stripped = line.strip()
            if stripped.startswith("#"):
                return stripped.lstrip("#").strip()
            if stripped:
                break
    return ""


def list_recipes(registry: Registry | None = None) -> list[Recipe]:
    registry = registry or get_registry()
    recipes: dict[str, Recipe] = {}
    for folder, record in registry.recipe_dirs():
        for path in sorted(folder.glob("*.yaml")):
            recipes.setdefault(path.stem, Recipe(path.stem, path, describe(path), record.distribution))
    return sorted(recipes.values(), key=lambda recipe: recipe.name)


def resolve_recipe(reference: str, registry: Registry | None = None) -> Path | None:
    """A path for ``reference`` if it names a shipped recipe (``quickstart`` or ``quickstart.yaml``)."""
    stem = reference[:-5] if reference.endswith(".yaml") else reference
    for recipe in list_recipes(registry):
        if recipe.name == stem:
            return recipe.path
    return None


def recipe_path(reference: str, option: str = "--config") -> str:
    """A recipe file for ``reference`` (a path or a shipped recipe name), or a :class:`UsageError` saying
    what is wrong (with the closest recipe name). ``option`` names the argument in the message."""
    if os.path.isfile(reference):
        return reference
    shipped = resolve_recipe(reference)
    if shipped is not None:
        return str(shipped)
    names = [recipe.name for recipe in list_recipes()]
    if os.path.isdir(reference):
        raise UsageError(f"{option} {reference}: is a folder; give a YAML recipe file or a recipe name")
    message = f"{option} {reference}: no recipe named {reference!r} and no file at that path."
    close = difflib.get_close_matches(reference.removesuffix(".yaml"), names, n=1, cutoff=0.6)
    if close:
        message += f" Did you mean {close[0]!r}?"
    raise UsageError(message + f" Recipes: {', '.join(names)} (`laart-lab recipes` describes them).")
