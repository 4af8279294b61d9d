"""Built-in attention backends (kind ``attention``; base class :class:`laart_lab.components.AttentionBackend`).

``softmax`` (exact) and ``linear`` (linear attention). The classes live in :mod:`laart_lab.attention`;
this module only wires them into the registry, the same way a third-party plugin would. They are
registered by import path, so listing plugins does not import torch.
"""

from __future__ import annotations

from laart_lab.hookspecs import RegisterComponent, hookimpl

__all__ = ["register_attention"]  # LinearAttention, SoftmaxAttention: lazy, see __getattr__


def __getattr__(name: str) -> object:
    # the classes themselves, imported on first use (this module is imported whenever plugins load)
    if name in ("LinearAttention", "SoftmaxAttention"):
        from laart_lab import attention

        return getattr(attention, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def register_attention(register: RegisterComponent) -> None:
    register("softmax", "laart_lab.attention.softmax:SoftmaxAttention")
    register("linear", "laart_lab.attention.linear:LinearAttention")
