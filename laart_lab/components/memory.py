"""The memory / concept-growth contract.

A memory module attaches to one transformer block of a model that offers a memory slot (``CharLM``).
The block calls it at two points, and a module overrides whichever it needs:

* :meth:`MemoryModule.mix_attention` sees the block's per-head ``q, k, v`` and the local attention
  output, and returns the output to use instead (an external key-value memory mixes in retrieved
  values here);
* :meth:`MemoryModule.transform_hidden` sees the block's output hidden states ``[batch, seq, d_model]``
  and returns new ones (a concept layer reads from its concepts here).

State that outlives one forward pass (stored keys, concepts) lives in buffers or parameters, so it is
saved in checkpoints. :meth:`reset` clears per-stream state at document boundaries and between
train and eval.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn


class MemoryModule(nn.Module):
    """Base class for dynamic memory and concept-growth components. Identity by default."""

    def mix_attention(self, q: Tensor, k: Tensor, v: Tensor, local_out: Tensor) -> Tensor:
        """Per-head mixing hook: tensors are ``[batch, seq, heads, head_dim]``; return like ``local_out``."""
        return local_out

    def transform_hidden(self, hidden: Tensor) -> Tensor:
        """Hidden-state hook: ``[batch, seq, d_model]`` in and out."""
        return hidden

    def reset(self, streams: Tensor | None = None) -> None:
        """Forget per-stream state; ``streams`` is a bool ``[batch]`` mask of streams to clear (None: all)."""

    def auxiliary_loss(self) -> Tensor | None:
        """An extra loss term from the last forward pass, added to the model's loss (None: none)."""
        return None


MemoryFactory = Callable[[int, int], MemoryModule]
"""What a model receives from a recipe: ``factory(d_model, n_heads)`` builds the module."""
