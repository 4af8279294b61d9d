"""Built-in attention backends (registered by :mod:`laart_lab.plugins.attention`).

* :class:`SoftmaxAttention` (``softmax``): exact attention via xformers or PyTorch SDPA.
* :class:`LinearAttention` (``linear``): φ(Q)(φ(K)ᵀV) linear attention, chunked PyTorch or Triton.
"""

from laart_lab.attention.linear import LinearAttention
from laart_lab.attention.softmax import SoftmaxAttention, xformers_build_info, xformers_unavailable_reason

__all__ = ["LinearAttention", "SoftmaxAttention", "xformers_build_info", "xformers_unavailable_reason"]
