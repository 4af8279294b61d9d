"""The attention-backend contract.

Every backend (built-in or third-party) subclasses :class:`AttentionBackend` and is registered
under a name through the ``register_attention`` hook. Models never construct a backend class
directly: they receive an :data:`AttentionFactory` from the recipe (``class_path: <name>``) and call
it once per layer, so each layer owns its backend instance (a backend may carry parameters, such
as a learned feature map).

Layout contract (the xformers layout, used everywhere in laart_lab):

* ``q``: ``[batch, q_len, heads, head_dim]``
* ``k``: ``[batch, kv_len, heads, head_dim]``
* ``v``: ``[batch, kv_len, heads, v_dim]``
* output: ``[batch, q_len, heads, v_dim]``, same dtype and device as ``q``.
* ``causal=True``: query ``i`` attends to keys ``j <= i + (kv_len - q_len)`` (queries are aligned with
  the *end* of the keys, which is what incremental decoding needs).
* ``key_padding_mask``: optional bool ``[batch, kv_len]``; ``True`` marks a real key that may be
  attended to, ``False`` a padding key that must receive no weight. A query whose keys are all masked
  returns zeros.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor, nn

# The layout check and the decoding-state base live with the kernels (which may not import from
# here); re-exported so that ``from laart_lab.components.attention import ...`` keeps working.
from laart_lab.kernels.contracts import DecodingState, check_qkv

__all__ = ["AttentionBackend", "AttentionFactory", "CachedKeysDecodingState", "DecodingState", "check_qkv"]


class CachedKeysDecodingState(DecodingState):
    """Generic decoding state: keep every past key and value and re-run the backend's forward.

    Correct for any causal backend, but costs O(t) per token at step t (so it is not
    :attr:`~DecodingState.recurrent`). Backends with a recurrent form (linear attention) override
    :meth:`AttentionBackend.decoding_state` with an O(1) state that declares ``recurrent = True``.
    """

    recurrent = False

    def __init__(self, backend: AttentionBackend) -> None:
        self.backend = backend
        self.keys: Tensor | None = None
        self.values: Tensor | None = None

    def step(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        self.keys = k if self.keys is None else torch.cat([self.keys, k], dim=1)
        self.values = v if self.values is None else torch.cat([self.values, v], dim=1)
        return self.backend(q, self.keys, self.values, causal=True)


class AttentionBackend(nn.Module, ABC):
    """An attention operator ``softmax-like(q k^T) v`` in the ``[batch, seq, heads, dim]`` layout.

    Subclasses implement :meth:`forward`. Constructor arguments are the backend's hyper-parameters
    (validated from the recipe by jsonargparse), all with defaults where a sensible one exists.
    """

    @abstractmethod
    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        causal: bool = False,
        key_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Attend ``q`` over ``k``/``v``; see the module docstring for the layout and mask contract."""

    def decoding_state(self) -> DecodingState:
        """A fresh state for causal token-by-token generation. Default: cache keys and values."""
        return CachedKeysDecodingState(self)

    def attention_weights(self, q: Tensor, k: Tensor, causal: bool = False) -> Tensor | None:
        """The (implied, normalised) attention weights ``[batch, heads, q_len, kv_len]`` for inspection.

        Used by the attention-map callback on short snippets only. ``None`` if the backend cannot say.
        """
        return None


AttentionFactory = Callable[[], AttentionBackend]
"""What a model receives from a recipe: calling it builds one backend instance (one per layer)."""

