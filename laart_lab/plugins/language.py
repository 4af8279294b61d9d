"""Built-in language plugin: the ``text`` data module and the language-model callbacks."""

from __future__ import annotations

from laart_lab.callbacks.attention_maps import AttentionMaps
from laart_lab.callbacks.grad_norm import GradNormMonitor
from laart_lab.callbacks.text_samples import TextSamples
from laart_lab.data.text import TextDataModule
from laart_lab.hookspecs import hookimpl


@hookimpl
def register_datamodule(register) -> None:
    register("text", TextDataModule)


@hookimpl
def register_callback(register) -> None:
    register("text_samples", TextSamples)
    register("attention_maps", AttentionMaps)
    register("grad_norm", GradNormMonitor)
