"""LAART Lab: a Lightning experiment platform for logic-augmented transformers.

Public API, stable for plugin packages:

* :data:`hookimpl` marks hook implementations; :mod:`laart_lab.hookspecs` defines the hooks;
* :mod:`laart_lab.components` holds the base classes of each component kind;
* :func:`laart_lab.registry.get_registry` looks components up by kind and name, and
  :func:`laart_lab.registry.registry_with` / :func:`laart_lab.registry.reset_registry` register plugin
  objects at run time (tests, notebooks);
* :func:`laart_lab.cli.main` runs the ``laart-lab`` command in-process;
* :func:`laart_lab.paths.data_root` / :func:`laart_lab.paths.data_path` locate the reference data;
* LightningModules and DataModules, by their class paths in recipes (``laart_lab.models.*``,
  ``laart_lab.data.*``).
"""

from laart_lab.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]
