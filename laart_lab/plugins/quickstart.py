"""Built-in plugin: the synthetic data used by the quickstart recipe (registered lazily)."""

from __future__ import annotations

from laart_lab.hookspecs import RegisterComponent, hookimpl


@hookimpl
def register_datamodule(register: RegisterComponent) -> None:
    register("marked_token", "laart_lab.data.synthetic:MarkedTokenDataModule")
