"""Recipes: the YAML files that ship with laart_lab and with installed plugin packages.

Plugins register recipe folders through the ``register_recipes`` hook. A recipe's one-line
description is the first comment line of the file. ``laart-lab fit --config NAME`` accepts a recipe
name (file stem) wherever a path is expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
