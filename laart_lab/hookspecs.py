"""The plugin contract: one pluggy hook per component kind.

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
A hook implementation whose name matches none of these is reported as an error when the plugin loads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pluggy

PROJECT_NAME = "laart_lab"
ENTRY_POINT_GROUP = "laart_lab"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

RegisterComponent = Callable[[str, "type | str"], None]


@hookspec
def register_attention(register: RegisterComponent) -> None:
    """Register attention backends: subclasses of :class:`laart_lab.components.AttentionBackend`."""


@hookspec
def register_memory(register: RegisterComponent) -> None:
    """Register memory and concept-growth modules: subclasses of :class:`laart_lab.components.MemoryModule`."""


@hookspec
def register_reasoner(register: RegisterComponent) -> None:
    """Register relational reasoners: subclasses of :class:`laart_lab.components.Reasoner`."""


@hookspec
def register_datamodule(register: RegisterComponent) -> None:
    """Register data modules: subclasses of :class:`lightning.pytorch.LightningDataModule`."""


@hookspec
def register_callback(register: RegisterComponent) -> None:
    """Register training callbacks: subclasses of :class:`lightning.pytorch.Callback`."""


@hookspec
def register_recipes(register: Callable[[Path], None]) -> None:
    """Register folders of YAML recipes, listed by ``laart-lab recipes`` and usable by name."""
