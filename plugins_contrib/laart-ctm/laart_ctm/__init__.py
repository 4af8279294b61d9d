"""laart-ctm: a Continuous Thought Machine (Darlow et al., 2025) for laart_lab, as a third-party plugin.

* :class:`laart_ctm.config.CTMConfig`: every CTM hyper-parameter, documented and checked once;
* :class:`laart_ctm.core.ContinuousThoughtMachine`: the CTM core, a plain ``nn.Module``;
* :class:`laart_ctm.reasoner.CTMReasoner`: the ``ctm`` reasoner (laart_lab's Reasoner contract);
* :class:`laart_ctm.parity.ParityCTM` and :class:`laart_ctm.parity_data.ParityDataModule` (``parity``):
  cumulative parity of bit sequences;
* :class:`laart_ctm.callbacks.CTMTickStats` (``ctm_ticks``): accuracy by tick, most-certain-tick histogram;
* recipes ``parity_ctm`` and ``clutrr_ctm`` (listed by ``laart-lab recipes``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("laart-ctm")
except PackageNotFoundError:  # imported from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
