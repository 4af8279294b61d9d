"""Built-in plugins, one module per component kind: ``plugins/<kind>.py`` registers every built-in
component of that kind (``attention``, ``memory``, ``reasoner``, ``datamodule``, ``callback``), and
``plugins/recipes.py`` the shipped recipe folder.

Each module is an entry point of the ``laart_lab`` group (``builtin_<kind>`` in ``pyproject.toml``) and
registers exactly as a third-party plugin would. Components are registered by import path
(``"module:Class"``), so loading these modules imports neither torch nor Lightning (``laart-lab plugins``
stays fast); a class is imported when a recipe uses it. One ``register(...)`` line per component.
"""
