"""The laart_lab plugin of this package (entry point ``ctm`` in the ``laart_lab`` group).

It uses only laart_lab's public plugin API: :data:`laart_lab.hookspecs.hookimpl` and the hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from laart_lab.hookspecs import hookimpl

from laart_ctm.callbacks import CTMTickStats
from laart_ctm.parity_data import ParityDataModule
from laart_ctm.reasoner import CTMReasoner

RECIPES = Path(__file__).resolve().parent / "recipes"


@hookimpl
def register_reasoner(register: Callable[[str, type], None]) -> None:
    register("ctm", CTMReasoner)


@hookimpl
def register_datamodule(register: Callable[[str, type], None]) -> None:
    register("parity", ParityDataModule)


@hookimpl
def register_callback(register: Callable[[str, type], None]) -> None:
    register("ctm_ticks", CTMTickStats)


@hookimpl
def register_recipes(register: Callable[[Path], None]) -> None:
    register(RECIPES)
