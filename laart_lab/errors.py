"""User-facing errors: ``laart-lab`` prints these as one line (no traceback) and exits 1 (2 for usage).

Any exception class listed by :func:`user_error_types` is a mistake the user can fix (a bad path, a
corrupt file, a malformed row, a wrong checkpoint): its message names the file or argument and the fix.
``--debug`` or ``LAART_LAB_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import os
import zipfile

DEBUG_ENV = "LAART_LAB_DEBUG"


class UserError(Exception):
    """A mistake in what the user gave (file, argument, recipe); the message says what and how to fix it."""


class UsageError(UserError):
    """A mistake on the command line (exit status 2)."""


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exception classes that are user errors. Imported lazily: only what is already loaded is listed."""
    import sys

    types: list[type[BaseException]] = [UserError, zipfile.BadZipFile, FileNotFoundError, IsADirectoryError]
    for module_name, class_name in (
        ("laart_lab.registry", "PluginError"),
        ("laart_lab.data.text", "TextDataError"),
        ("laart_lab.data.clutrr", "ClutrrFormatError"),
        ("laart_lab.data.clutrr", "ClutrrDataError"),
    ):
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None) if module is not None else None
        if isinstance(cls, type) and issubclass(cls, BaseException):
            types.append(cls)
    return tuple(types)
