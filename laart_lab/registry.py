"""Plugin discovery and the component registry.

Plugins are modules exposed through the ``laart_lab`` entry-point group (built-in ones too: see
``pyproject.toml``). :func:`load_plugins` imports each one into a pluggy ``PluginManager``; a plugin
whose import raises, or that implements a hook name we do not define, is recorded as *failed* with
its error and a warning, and the others still load. :class:`Registry` then asks every plugin's
``register_<kind>`` hooks for its components and indexes them by ``(kind, name)``.

:meth:`Registry.resolve` is the one way from what a recipe or checkpoint says (a registered name, a
deprecated alias, or a class path) to a class: the CLI, ``laart-lab check``, the jsonargparse hook
(:mod:`laart_lab.component_names`) and the models (:func:`component_factory`) all go through it.

Environment:

* ``LAART_LAB_DISABLE_PLUGIN_AUTOLOAD=1`` loads only the built-in plugins (those shipped by the
  ``laart-lab`` distribution) plus the entry points named in ``LAART_LAB_PLUGINS=name1,name2``.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata as importlib_metadata
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from laart_lab import __version__, hookspecs
from laart_lab.hookspecs import ComponentKind

BUILTIN_DISTRIBUTION = "laart-lab"
AUTOLOAD_ENV = "LAART_LAB_DISABLE_PLUGIN_AUTOLOAD"
ALLOWLIST_ENV = "LAART_LAB_PLUGINS"


class PluginError(Exception):
    """Base class of the registry's user-facing errors."""


class UnknownComponentError(PluginError, LookupError):
    """A recipe named a component that no loaded plugin registers."""


class DuplicateComponentError(PluginError):
    """Two plugins registered the same kind and name."""


class InvalidComponentError(PluginError, TypeError):
    """A plugin registered something that is not a subclass of its kind's base class."""


class PluginLoadWarning(UserWarning):
    """A plugin failed to load; the others were loaded."""


class DeprecatedNameWarning(FutureWarning):
    """A recipe or checkpoint used a component's old (aliased) name; it still works.

    A ``FutureWarning`` (Python's deprecation category for end users): shown by default, unlike
    ``DeprecationWarning``, because the one who can fix it is the recipe's author.
    """


#: kind name -> kind; the list itself is :data:`laart_lab.hookspecs.KINDS`
KINDS: dict[str, ComponentKind] = {kind.name: kind for kind in hookspecs.KINDS}


@dataclass
class PluginRecord:
    """One plugin (entry point or object registered at run time) and how its loading went."""

    name: str
    distribution: str
    version: str
    module: str
    status: str = "loaded"  # "loaded" | "failed"
    error: str | None = None
    plugin: Any = field(default=None, repr=False)


def _split_class_path(path: str) -> tuple[str, str]:
    """``"pkg.module:Class"`` or ``"pkg.module.Class"`` -> ``("pkg.module", "Class")``."""
    if ":" in path:
        module, _, name = path.partition(":")
    else:
        module, _, name = path.rpartition(".")
    if not module or not name:
        raise PluginError(f"a lazily registered component needs 'module:Class' or 'module.Class'; got {path!r}")
    return module, name


@dataclass(frozen=True)
class ComponentEntry:
    """A registered component: ``kind`` + ``name`` -> ``cls``, with where it came from.

    ``target`` is the class, or its import path (``"pkg.module:Class"``) for a plugin that registers
    lazily, so that listing components (``laart-lab plugins``) imports no heavy module. A lazy class is
    imported and checked against its kind's base class on first use of :attr:`cls`.
    """

    kind: str
    name: str
    target: type | str
    plugin: str
    distribution: str
    version: str

    @property
    def cls(self) -> type:
        if not isinstance(self.target, str):
            return self.target
        module_name, class_name = _split_class_path(self.target)
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as err:
            raise PluginError(
                f"plugin {self.plugin!r} ({self.distribution} {self.version}) registered {self.kind} {self.name!r} "
                f"as {self.target!r}, which cannot be imported: {type(err).__name__}: {err}"
            ) from err
        _check_base(self.kind, self.name, cls, self.plugin, self.distribution)
        object.__setattr__(self, "target", cls)  # imported once
        return cls

    @property
    def class_path(self) -> str:
        if isinstance(self.target, str):
            return ".".join(_split_class_path(self.target))
        return f"{self.target.__module__}.{self.target.__qualname__}"


def import_class_path(path: str) -> Any:
    """The object ``"pkg.module.Name"`` or ``"pkg.module:Name"`` names (ImportError / AttributeError if none)."""
    module_name, name = _split_class_path(path)
    return getattr(importlib.import_module(module_name), name)


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True)
class Alias:
    """A deprecated name (or old class path) of a component, kept so old recipes and checkpoints load."""

    kind: str
    old: str
    name: str  # the component's registered name now
    plugin: str


def _check_base(kind: str, name: str, cls: Any, plugin: str, distribution: str) -> None:
    base = KINDS[kind].base
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise InvalidComponentError(
            f"plugin {plugin!r} ({distribution}) registered {kind} {name!r} as {cls!r}, "
            f"which is not a subclass of {base.__module__}.{base.__qualname__}"
        )


def create_plugin_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    return manager


def _entry_points() -> list[importlib_metadata.EntryPoint]:
    return sorted(importlib_metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _autoload_disabled() -> bool:
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _allowlist() -> set[str]:
    return {name.strip() for name in os.environ.get(ALLOWLIST_ENV, "").split(",") if name.strip()}


def _register_checked(manager: pluggy.PluginManager, plugin: Any, record: PluginRecord) -> None:
    """Register ``plugin`` and reject hook implementations whose name matches no hookspec."""
    manager.register(plugin, name=record.name)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as err:
        manager.unregister(plugin)
        known = ", ".join(hookspecs.hook_names())
        raise PluginError(f"{err} (known hooks: {known})") from err


def load_plugins(manager: pluggy.PluginManager | None = None) -> tuple[pluggy.PluginManager, list[PluginRecord]]:
    """Import every plugin of the ``laart_lab`` entry-point group into a plugin manager.

    Returns the manager and one :class:`PluginRecord` per entry point considered, failed ones included.
    """
    manager = manager or create_plugin_manager()
    records: list[PluginRecord] = []
    only_builtins = _autoload_disabled()
    allowed = _allowlist()
    for entry_point in _entry_points():
        dist = entry_point.dist
        dist_name = dist.metadata["Name"] if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        is_builtin = dist_name == BUILTIN_DISTRIBUTION
        if only_builtins and not is_builtin and entry_point.name not in allowed:
            continue
        record = PluginRecord(entry_point.name, dist_name, version, entry_point.value)
        try:
            plugin = entry_point.load()
            record.plugin = plugin
            _register_checked(manager, plugin, record)
        except Exception as err:  # a broken plugin must not take the platform down with it
            record.status = "failed"
            record.error = f"{type(err).__name__}: {err}"
            warnings.warn(
                f"laart_lab plugin {entry_point.name!r} ({entry_point.value}, from {dist_name} {version}) "
                f"failed to load and was skipped: {record.error}",
                PluginLoadWarning,
                stacklevel=2,
            )
        records.append(record)
    return manager, records


class Registry:
    """Components by kind and name, built from the loaded plugins' ``register_<kind>`` hooks."""

    def __init__(self, manager: pluggy.PluginManager, plugins: Iterable[PluginRecord]) -> None:
        self.manager = manager
        self.plugins: list[PluginRecord] = list(plugins)
        self._components: dict[tuple[str, str], ComponentEntry] = {}
        self._aliases: dict[tuple[str, str], Alias] = {}
        self._warned: set[tuple[str, str]] = set()  # each old name warns once per process, not per lookup
        self._recipe_dirs: list[tuple[Path, PluginRecord]] = []
        self._collect()

    # -- building ---------------------------------------------------------------------------
    def _record_for(self, plugin: Any) -> PluginRecord:
        for record in self.plugins:
            if record.plugin is plugin:
                return record
        name = self.manager.get_name(plugin) or repr(plugin)
        record = PluginRecord(
            name, "(registered at run time)", "", getattr(plugin, "__name__", repr(plugin)), plugin=plugin
        )
        self.plugins.append(record)
        return record

    def _collect(self) -> None:
        for kind in KINDS.values():
            for impl in getattr(self.manager.hook, kind.hook).get_hookimpls():
                record = self._record_for(impl.plugin)
                impl.function(register=self._registrar(kind, record))
        for impl in self.manager.hook.register_recipes.get_hookimpls():
            record = self._record_for(impl.plugin)
            impl.function(register=lambda path, record=record: self._recipe_dirs.append((Path(path), record)))

    def _registrar(self, kind: ComponentKind, record: PluginRecord) -> hookspecs.RegisterComponent:
        def register(name: str, target: type | str, *, aliases: Iterable[str] = ()) -> None:
            self.add(
                kind.name, name, target, plugin=record.name, distribution=record.distribution, version=record.version
            )
            for old in aliases:
                self.add_alias(kind.name, old, name, plugin=record.name)

        return register

    def add(
        self, kind: str, name: str, cls: type | str, *, plugin: str, distribution: str, version: str
    ) -> ComponentEntry:
        """Index one component. Raises on an unknown kind, a wrong base class or a duplicate name.

        ``cls`` may be an import path (``"pkg.module:Class"``): it is then imported and checked on first use.
        """
        if kind not in KINDS:
            raise PluginError(f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}")
        if isinstance(cls, str):
            _split_class_path(cls)  # well-formed
        else:
            _check_base(kind, name, cls, plugin, distribution)
        entry = ComponentEntry(kind, name, cls, plugin, distribution, version)
        existing = self._components.get((kind, name))
        if existing is not None and existing.class_path != entry.class_path:
            raise DuplicateComponentError(
                f"two plugins register the {kind} {name!r}: {existing.class_path} from "
                f"{existing.distribution} {existing.version} (plugin {existing.plugin!r}) and "
                f"{entry.class_path} from {distribution} {version} (plugin {plugin!r}). "
                f"Uninstall one of them, or set {AUTOLOAD_ENV}=1 with {ALLOWLIST_ENV} naming the one to keep."
            )
        if (kind, name) in self._aliases:
            raise DuplicateComponentError(
                f"plugin {plugin!r} registers the {kind} {name!r}, which plugin {self._aliases[kind, name].plugin!r} "
                f"keeps as a deprecated name of {self._aliases[kind, name].name!r}"
            )
        self._components[(kind, name)] = entry
        return entry

    def add_alias(self, kind: str, old: str, name: str, *, plugin: str = "(run time)") -> Alias:
        """Keep ``old`` (a former registered name, or a former class path) resolving to ``kind``/``name``.

        Old recipes and checkpoints then still load; each use warns with :class:`DeprecatedNameWarning`.
        """
        if kind not in KINDS:
            raise PluginError(f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}")
        if (kind, old) in self._components:
            raise DuplicateComponentError(
                f"plugin {plugin!r} keeps {old!r} as an old {kind} name, but a plugin registers that name"
            )
        alias = Alias(kind, old, name, plugin)
        existing = self._aliases.get((kind, old))
        if existing is not None and existing.name != name:
            raise DuplicateComponentError(
                f"the old {kind} name {old!r} is kept for two components: {existing.name!r} "
                f"(plugin {existing.plugin!r}) and {name!r} (plugin {plugin!r})"
            )
        self._aliases[(kind, old)] = alias
        return alias

    # -- queries ----------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(name for (k, name) in self._components if k == kind)

    def entries(self, kind: str | None = None) -> list[ComponentEntry]:
        return [entry for key, entry in sorted(self._components.items()) if kind is None or key[0] == kind]

    def aliases(self, kind: str | None = None) -> list[Alias]:
        return [alias for key, alias in sorted(self._aliases.items()) if kind is None or key[0] == kind]

    def __iter__(self) -> Iterator[ComponentEntry]:
        return iter(self.entries())

    def find(self, kind: str, name: str) -> ComponentEntry | None:
        """The component registered as ``kind``/``name`` (aliases not followed: see :meth:`lookup`)."""
        return self._components.get((kind, name))

    def lookup(self, kind: str, ref: str) -> ComponentEntry | None:
        """The component a recipe's ``ref`` names: a registered name, a deprecated alias (warns), or None.

        ``ref`` may also be an old class path kept as an alias, or ``"module:Class"`` / ``"module.Class"``
        of a registered component (old checkpoints hold such paths).
        """
        entry = self._components.get((kind, ref))
        if entry is not None:
            return entry
        alias = self._aliases.get((kind, ref)) or self._aliases.get((kind, ref.replace(":", ".")))
        if alias is not None:
            entry = self._components.get((kind, alias.name))
            if entry is None:
                raise PluginError(
                    f"{ref!r} is kept as an old name of the {kind} {alias.name!r} (plugin {alias.plugin!r}), "
                    f"which no plugin registers. {self.unknown_message(kind, alias.name, suggest=False)}"
                )
            if (kind, ref) not in self._warned:
                self._warned.add((kind, ref))
                warnings.warn(
                    f"{kind} {ref!r} is a deprecated name of {alias.name!r} ({entry.class_path}); "
                    f"write `class_path: {alias.name}` in the recipe",
                    DeprecatedNameWarning,
                    stacklevel=3,
                )
            return entry
        return None

    def get(self, kind: str, name: str) -> ComponentEntry:
        """The component ``kind``/``name`` (aliases followed), or an :class:`UnknownComponentError` with close names."""
        entry = self.lookup(kind, name)
        if entry is None:
            raise UnknownComponentError(self.unknown_message(kind, name))
        return entry

    def resolve(self, kind: str, ref: str | type) -> type:
        """The class ``ref`` names for ``kind``: a registered name, a deprecated alias, or a class path.

        The one way from a name to a class. Unknown names raise :class:`UnknownComponentError` (with the
        closest registered name); a class path that cannot be imported, or is not of this kind, a
        :class:`PluginError` naming it.
        """
        if kind not in KINDS:
            raise PluginError(f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}")
        if isinstance(ref, type):
            cls: Any = ref
        else:
            entry = self.lookup(kind, ref)
            if entry is not None:
                return entry.cls
            if "." not in ref and ":" not in ref:
                raise UnknownComponentError(self.unknown_message(kind, ref))
            try:
                cls = import_class_path(ref)
            except (ImportError, AttributeError) as err:
                raise PluginError(
                    f"{kind} class_path {ref!r} cannot be imported ({type(err).__name__}: {err}). "
                    f"Registered {kind} names: {', '.join(self.names(kind)) or '(none)'}"
                ) from err
        base = KINDS[kind].base
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(f"{ref!r} is not of kind {kind!r}: not a subclass of {KINDS[kind].base_name}")
        return cls

    def class_path_of(self, kind: str, ref: str) -> str | None:
        """The dotted class path of the component ``ref`` names (name or alias), without importing it."""
        entry = self.lookup(kind, ref)
        return entry.class_path if entry is not None else None

    def name_of(self, kind: str, cls: Any) -> str | None:
        """The registered name of class ``cls`` (without importing other lazily registered classes)."""
        if not isinstance(cls, type):
            return None
        path = _dotted(cls)
        for entry in self.entries(kind):
            if entry.target is cls or entry.class_path == path:
                return entry.name
        return None

    def unknown_message(self, kind: str, name: str, suggest: bool = True) -> str:
        if kind not in KINDS:
            return f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}"
        available = self.names(kind)
        message = f"no {kind} named {name!r} is registered."
        close = difflib.get_close_matches(name, available, n=1, cutoff=0.5) if suggest else []
        if close:
            message += f" Did you mean {close[0]!r}?"
        message += f" Available {kind} names: {', '.join(available) if available else '(none)'}."
        failed = [record for record in self.plugins if record.status == "failed"]
        if failed:
            message += " Plugins that failed to load: " + "; ".join(f"{r.name} ({r.error})" for r in failed) + "."
        message += " Run `laart-lab plugins` to see every plugin and component."
        return message

    def kind_of_class(self, cls: Any) -> str | None:
        """The component kind whose base class ``cls`` is (or derives from), if any."""
        if not isinstance(cls, type):
            return None
        for kind in KINDS.values():
            if issubclass(cls, kind.base):
                return kind.name
        return None

    def recipe_dirs(self) -> list[tuple[Path, PluginRecord]]:
        return list(self._recipe_dirs)

    def failed_plugins(self) -> list[PluginRecord]:
        return [record for record in self.plugins if record.status == "failed"]

    def report(self) -> dict[str, Any]:
        """Plugins and components as plain data (``laart-lab plugins --json`` and each run's ``plugins.yaml``)."""
        components = [
            {
                "kind": entry.kind,
                "name": entry.name,
                "class": entry.class_path,
                "plugin": entry.plugin,
                "distribution": entry.distribution,
                "version": entry.version,
                "status": "loaded",
            }
            for entry in self.entries()
        ]
        for alias in self.aliases():
            entry = self._components.get((alias.kind, alias.name))
            components.append(
                {
                    "kind": alias.kind,
                    "name": alias.old,
                    "class": entry.class_path if entry else "?",
                    "plugin": alias.plugin,
                    "distribution": entry.distribution if entry else "?",
                    "version": entry.version if entry else "?",
                    "status": f"deprecated name of {alias.name!r}",
                }
            )
        return {
            "laart_lab": __version__,
            "plugins": [
                {
                    "name": record.name,
                    "module": record.module,
                    "distribution": record.distribution,
                    "version": record.version,
                    "status": record.status,
                    "error": record.error,
                }
                for record in self.plugins
            ],
            "components": components,
        }


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use from the installed plugins."""
    global _registry
    if _registry is None:
        manager, records = load_plugins()
        _registry = Registry(manager, records)
    return _registry


def reset_registry(registry: Registry | None = None) -> None:
    """Drop (or replace) the process-wide registry; tests use this after registering plugins at run time."""
    global _registry
    _registry = registry


def registry_with(*plugins: Any, include_installed: bool = True) -> Registry:
    """A registry with extra plugin objects registered at run time (as pytest's ``pytester`` does).

    Useful in tests and notebooks: ``reset_registry(registry_with(my_plugin_module))``.
    """
    manager, records = load_plugins() if include_installed else (create_plugin_manager(), [])
    for index, plugin in enumerate(plugins):
        name = getattr(plugin, "__name__", f"runtime-plugin-{index}")
        record = PluginRecord(name, "(registered at run time)", "", name, plugin=plugin)
        _register_checked(manager, plugin, record)
        records.append(record)
    return Registry(manager, records)


# --------------------------------------------------------------------------------------------
# component factories <-> plain data (models save plain specs in their hyper-parameters)
# --------------------------------------------------------------------------------------------
_PLAIN = (str, int, float, bool, type(None))


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def component_spec(factory: Any, kind: str) -> Any:
    """A plain-data description ``{"class_path": ..., "init_args": {...}}`` of a component factory.

    Recipes already give plain data (LightningCLI passes the recipe's dict); this covers models built
    in Python from a class or a ``functools.partial`` of one. The registered name is preferred to the
    class path, so that the spec survives the class moving.
    """
    if _is_plain(factory):
        return factory
    init_args: dict[str, Any] = {}
    target = factory
    if isinstance(factory, functools.partial):
        target, init_args = factory.func, dict(factory.keywords)
    name = get_registry().name_of(kind, target)
    class_path = name or f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
    return {"class_path": class_path, "init_args": {k: v for k, v in init_args.items() if _is_plain(v)}}


def component_factory(spec: Any, kind: str) -> Any:
    """The inverse of :func:`component_spec`: a factory from a callable, a name, or a class_path mapping.

    ``None`` and callables pass through unchanged; names and class paths go through :meth:`Registry.resolve`.
    """
    if spec is None or callable(spec):
        return spec
    if isinstance(spec, str):
        spec = {"class_path": spec}
    if not isinstance(spec, Mapping) or "class_path" not in spec:
        raise ValueError(f"cannot build a {kind} component from {spec!r}; expected a class_path/init_args mapping")
    cls = get_registry().resolve(kind, str(spec["class_path"]))
    return functools.partial(cls, **dict(spec.get("init_args") or {}))


def make_specs_plain(hparams: MutableMapping[str, Any], kinds: Mapping[str, str]) -> None:
    """Replace each component factory in ``hparams`` (``{argument: kind}``) by its plain spec.

    A model built in Python gets classes or partials; checkpoints must hold plain data only.
    """
    for key, kind in kinds.items():
        hparams[key] = component_spec(hparams.get(key), kind)
