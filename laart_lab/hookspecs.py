"""The plugin contract: one pluggy hook per component kind, all generated from :data:`KINDS`.

A plugin is a module (or object) exposed through the ``laart_lab`` entry-point group, with functions
marked ``@laart_lab.hookimpl`` whose names are the hooks below. Each hook receives a ``register``
callable; the plugin calls it once per component it provides::

    import laart_lab

    @laart_lab.hookimpl
    def register_attention(register):
        register("my_attention", MyAttention)   # MyAttention subclasses laart_lab.components.AttentionBackend

A recipe then selects the component by its registered name (``class_path: my_attention``).
``register`` also takes an import path instead of the class (``register("my_attention",
"my_package.attention:MyAttention")``): the class is then imported (and checked) only when a recipe
uses it, so ``laart-lab plugins`` and ``recipes`` start without importing torch or Lightning.
A renamed component keeps its old names working (old recipes and checkpoints) with a deprecation
warning: ``register("my_attention", MyAttention, aliases=["old_name", "old_package.module.OldClass"])``.
A hook implementation whose name matches none of these is reported as an error when the plugin loads.

The hooks (``register_<kind>`` for every kind in :data:`KINDS`, plus ``register_recipes``):

* ``register_attention``: attention backends, subclasses of ``laart_lab.components.AttentionBackend``;
* ``register_memory``: memory and concept-growth modules, subclasses of ``laart_lab.components.MemoryModule``;
* ``register_reasoner``: relational reasoners, subclasses of ``laart_lab.components.Reasoner``;
* ``register_datamodule``: data modules, subclasses of ``lightning.pytorch.LightningDataModule``;
* ``register_callback``: training callbacks, subclasses of ``lightning.pytorch.Callback``;
* ``register_recipes``: folders of YAML recipes, listed by ``laart-lab recipes`` and usable by name.

Adding a kind is one line in :data:`KINDS` (its hook, the registry's kind, its base-class check and its
rows in ``laart-lab plugins`` follow from it) plus, for built-in components, ``laart_lab/plugins/<kind>.py``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pluggy

PROJECT_NAME = "laart_lab"
ENTRY_POINT_GROUP = "laart_lab"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class RegisterComponent(Protocol):
    """The ``register`` callable a ``register_<kind>`` hook receives."""

    def __call__(self, name: str, target: type | str, *, aliases: Iterable[str] = ()) -> None: ...


@dataclass(frozen=True)
class ComponentKind:
    """One kind of component: its name, the base class its components subclass, and what they are."""

    name: str
    base_path: str  # "module:Class", imported lazily so that listing kinds stays cheap (no torch)
    what: str  # for the hook's docstring and messages

    @property
    def hook(self) -> str:
        return f"register_{self.name}"

    @property
    def base(self) -> type:
        module_name, _, class_name = self.base_path.partition(":")
        return getattr(importlib.import_module(module_name), class_name)

    @property
    def base_name(self) -> str:
        return self.base_path.replace(":", ".")


#: Every component kind. The one list to extend when adding a kind.
KINDS: tuple[ComponentKind, ...] = (
    ComponentKind("attention", "laart_lab.components.attention:AttentionBackend", "attention backends"),
    ComponentKind("memory", "laart_lab.components.memory:MemoryModule", "memory and concept-growth modules"),
    ComponentKind("reasoner", "laart_lab.components.reasoner:Reasoner", "relational reasoners"),
    ComponentKind("datamodule", "lightning.pytorch:LightningDataModule", "data modules"),
    ComponentKind("callback", "lightning.pytorch:Callback", "training callbacks"),
)


def _component_hookspec(kind: ComponentKind) -> Callable[..., None]:
    def hook(register: RegisterComponent) -> None:
        pass

    hook.__name__ = hook.__qualname__ = kind.hook
    hook.__doc__ = f"Register {kind.what}: subclasses of :class:`{kind.base_name}`."
    return hookspec(hook)


# pluggy reads hookspecs from this module's attributes: one ``register_<kind>`` function per kind
for _kind in KINDS:
    globals()[_kind.hook] = _component_hookspec(_kind)
del _kind


@hookspec
def register_recipes(register: Callable[[Path], None]) -> None:
    """Register folders of YAML recipes, listed by ``laart-lab recipes`` and usable by name."""


def hook_names() -> list[str]:
    """Every hook a plugin may implement."""
    return sorted([kind.hook for kind in KINDS] + ["register_recipes"])
