"""Where reference data lives: ``$LAART_LAB_DATA``, else ``../shared/data`` beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "LAART_LAB_DATA"
REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """The reference-data folder (it may not exist: callers say so with a clear error or skip)."""
    configured = os.environ.get(DATA_ENV)
    if configured:
        return Path(configured).expanduser()
    return REPO_ROOT.parent / "shared" / "data"


def data_path(*parts: str) -> Path:
    """A file under :func:`data_root`, e.g. ``data_path("tinyshakespeare", "input.txt")``."""
    return data_root().joinpath(*parts)
