"""LAART Lab: a Lightning experiment platform for logic-augmented transformers.

Public plugin API: :data:`hookimpl` (mark hook implementations), :mod:`laart_lab.hookspecs` (the
hooks), :mod:`laart_lab.components` (the base classes of each component kind) and
:func:`laart_lab.registry.get_registry` (look components up by kind and name).
"""

from laart_lab.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
