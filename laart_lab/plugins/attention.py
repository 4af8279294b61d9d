"""Built-in attention plugin: registers ``softmax`` (exact) and ``linear`` (linear attention).

The classes live in :mod:`laart_lab.attention`; this module only wires them into the registry, the
same way a third-party plugin would.
"""

from __future__ import annotations

from laart_lab.attention import LinearAttention, SoftmaxAttention
from laart_lab.hookspecs import RegisterComponent, hookimpl

__all__ = ["LinearAttention", "SoftmaxAttention", "register_attention"]


@hookimpl
def register_attention(register: RegisterComponent) -> None:
    register("softmax", SoftmaxAttention)
    register("linear", LinearAttention)
