"""Known-harmless messages that every ``laart-lab`` run would otherwise print, silenced on purpose.

Each filter matches one message exactly (never a whole category or module), with the reason beside it,
so real warnings still show. :func:`silence_known_noise` is idempotent.
"""

from __future__ import annotations

import logging
import warnings

_installed: set[str] = set()


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).lstrip().startswith(self.prefixes)


def silence_known_noise(subcommand: str | None = None) -> None:
    """Install the filters (``subcommand``: the trainer subcommand being run, for the stage-specific ones)."""
    if "common" not in _installed:
        _installed.add("common")
        # Lightning 2.6's own utilities/_pytree.py calls isinstance(..., LeafSpec), which torch >= 2.10
        # deprecates; nothing in our code or recipes can change it (Lightning fixes it upstream).
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        # ThroughputMonitor logs tokens/s and samples/s, which is what the recipes use it for; our models do
        # not define flops_per_batch (MFU is meaningless on the CPU recipes), so this note is noise.
        warnings.filterwarnings("ignore", message=r"When using the `ThroughputMonitor`, you need to define")
        # Advertising, not a diagnostic: Lightning prints it on every Trainer it builds.
        # (rank_zero_info logs through whichever of these loggers Lightning's import order left in place)
        for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
            logging.getLogger(name).addFilter(_DropMessages(("💡 Tip:",)))
    if subcommand == "fit" and "fit" not in _installed:
        _installed.add("fit")
        # laart-lab resolves resumption itself (a plain run starts fresh; --ckpt_path last / a path resumes and
        # says so). Lightning treats ckpt_path=None with an OnExceptionCheckpoint as an implicit "last", which
        # finds nothing in a fresh version folder and then prints these two misleading warnings.
        warnings.filterwarnings("ignore", message=r"`\.fit\(ckpt_path=None\)` was called without a model")
        warnings.filterwarnings("ignore", message=r'\.fit\(ckpt_path="last"\) is set, but there is no last checkpoint')
    if subcommand == "resume" and "resume" not in _installed:
        _installed.add("resume")
        # a resume continues in the run's own version folder on purpose (TensorBoard curves continue), so
        # its checkpoint folder is expected to hold the checkpoints written before the interruption
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    if subcommand in ("validate", "test", "predict") and "eval" not in _installed:
        _installed.add("eval")
        # validate/test/predict write to a new version folder, so the checkpoint's ModelCheckpoint bookkeeping
        # (best-k paths of the training run) is not reloaded, which is what these stages want anyway.
        warnings.filterwarnings("ignore", message=r"The dirpath has changed from")
