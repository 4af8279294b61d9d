"""Built-in plugin: the synthetic data used by the quickstart recipe."""

from __future__ import annotations

from laart_lab.data.synthetic import MarkedTokenDataModule
from laart_lab.hookspecs import hookimpl


@hookimpl
def register_datamodule(register) -> None:
    register("marked_token", MarkedTokenDataModule)
