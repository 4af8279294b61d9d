"""The laart_lab plugin of this package (entry point ``ctm`` in the ``laart_lab`` group).

It uses only laart_lab's public plugin API: :data:`laart_lab.hookspecs.hookimpl` and the hooks. The
components are registered by import path, so listing plugins imports neither torch nor Lightning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from laart_lab.hookspecs import hookimpl

RECIPES = Path(__file__).resolve().parent / "recipes"


@hookimpl
def register_reasoner(register: Callable[[str, type | str], None]) -> None:
    register("ctm", "laart_ctm.reasoner:CTMReasoner")


@hookimpl
def register_datamodule(register: Callable[[str, type | str], None]) -> None:
    register("parity", "laart_ctm.parity_data:ParityDataModule")


@hookimpl
def register_callback(register: Callable[[str, type | str], None]) -> None:
    register("ctm_ticks", "laart_ctm.callbacks:CTMTickStats")


@hookimpl
def register_recipes(register: Callable[[Path], None]) -> None:
    register(RECIPES)
