"""Built-in language plugin: the ``text`` data module and the language-model callbacks (registered lazily)."""

from __future__ import annotations

from laart_lab.hookspecs import RegisterComponent, hookimpl


@hookimpl
def register_datamodule(register: RegisterComponent) -> None:
    register("text", "laart_lab.data.text:TextDataModule")
    register("continual_text", "laart_lab.data.continual:ContinualTextDataModule")


@hookimpl
def register_callback(register: RegisterComponent) -> None:
    register("text_samples", "laart_lab.callbacks.text_samples:TextSamples")
    register("attention_maps", "laart_lab.callbacks.attention_maps:AttentionMaps")
    register("grad_norm", "laart_lab.callbacks.grad_norm:GradNormMonitor")
