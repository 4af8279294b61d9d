"""Reading checkpoints with clear errors, and finding the one to resume a recipe's run from.

* :func:`read_checkpoint` loads with ``torch.load(weights_only=True)`` and turns a missing,
  truncated or foreign file into a :class:`CheckpointError` naming the file and the fix.
* :func:`checkpoint_model_class` is the LightningModule class a checkpoint was trained with
  (LightningCLI records it as ``hyper_parameters._class_path``).
* :func:`find_resumable` is the newest checkpoint under ``<save_dir>/<name>/version_*/checkpoints``
  (``last.ckpt``, the best-k files, and ``interrupted.ckpt`` written on Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

from laart_lab.errors import UserError

SPECIAL_CKPT_PATHS = ("last", "best", "hpc", "registry")


class CheckpointError(UserError):
    """A checkpoint file is missing, unreadable, or of the wrong kind for the command."""


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint at ``path`` as plain data (tensors, numbers, strings), or a :class:`CheckpointError`."""
    import torch

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; give the path of a .ckpt file (or `last`)")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; give the path of a .ckpt file inside it")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"checkpoint {path} is truncated or not a checkpoint (not a torch zip archive, {path.stat().st_size} "
            "bytes); it was probably cut off while being written or copied. Use another checkpoint of the run "
            "(e.g. last.ckpt) or re-copy it"
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError/UnpicklingError/EOFError for damaged archives
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({first}); it is damaged or was not written by Lightning. "
            "Use another checkpoint of the run (e.g. last.ckpt) or re-copy it"
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no state_dict); give a .ckpt written by fit")
    return checkpoint


def checkpoint_model_class(checkpoint: dict[str, Any]) -> str | None:
    """The ``module.Class`` of the LightningModule that wrote ``checkpoint`` (None if not recorded)."""
    hparams = checkpoint.get("hyper_parameters") or {}
    class_path = hparams.get("_class_path")
    return str(class_path) if class_path else None


def _version_number(folder: Path) -> int:
    match = re.fullmatch(r"version_(\d+)", folder.name)
    return int(match.group(1)) if match else -1


def find_resumable(run_root: str | Path, extra: list[str | Path] | None = None) -> Path | None:
    """The newest ``*.ckpt`` in ``run_root/version_*/checkpoints`` (or among ``extra`` files), by mtime."""
    root = Path(run_root)
    candidates = [p for p in root.glob("*/checkpoints/*.ckpt") if p.is_file()]
    candidates += [Path(p) for p in (extra or []) if Path(p).is_file()]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p.stat().st_mtime, _version_number(p.parent.parent)))


def version_of(checkpoint_path: str | Path, run_root: str | Path) -> str | None:
    """``version_N`` if ``checkpoint_path`` lies in ``run_root/version_N/checkpoints``, else None."""
    path, root = Path(checkpoint_path).resolve(), Path(run_root).resolve()
    if path.parent.name == "checkpoints" and path.parent.parent.parent == root:
        return path.parent.parent.name
    return None
