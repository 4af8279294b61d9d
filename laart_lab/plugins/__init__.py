"""Built-in plugins. Each module is exposed as an entry point in the ``laart_lab`` group
(see ``pyproject.toml``) and registers its components exactly as a third-party plugin would."""
