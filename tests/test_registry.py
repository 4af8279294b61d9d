"""The plugin registry: discovery through entry points, provenance, and its errors."""

from __future__ import annotations

import functools
import json
import sys
import types
import warnings
from pathlib import Path

import pytest

import laart_lab
from laart_lab.components import AttentionBackend
from laart_lab.registry import (
    ALLOWLIST_ENV,
    AUTOLOAD_ENV,
    KINDS,
    DeprecatedNameWarning,
    DuplicateComponentError,
    InvalidComponentError,
    PluginError,
    PluginLoadWarning,
    UnknownComponentError,
    component_factory,
    component_spec,
    create_plugin_manager,
    get_registry,
    registry_with,
    reset_registry,
)
from tests.conftest import ECHO_PLUGIN, run_cli

GOOD_PLUGIN = ECHO_PLUGIN


def test_builtin_components_come_from_the_laart_lab_distribution() -> None:
    entry = get_registry().get("attention", "softmax")
    assert entry.distribution == "laart-lab"
    assert entry.version == laart_lab.__version__
    assert issubclass(entry.cls, AttentionBackend)
    assert get_registry().get("datamodule", "marked_token").plugin == "builtin_datamodule"


def test_each_builtin_kind_registers_in_its_own_plugin_module() -> None:
    """One place per kind: every built-in component comes from ``laart_lab/plugins/<kind>.py``."""
    plugins_dir = Path(laart_lab.__file__).parent / "plugins"
    builtins = [entry for entry in get_registry() if entry.distribution == "laart-lab"]
    assert {entry.kind for entry in builtins} == set(KINDS)  # every kind has built-in components today
    for entry in builtins:
        assert entry.plugin == f"builtin_{entry.kind}", entry
        assert f'register("{entry.name}",' in (plugins_dir / f"{entry.kind}.py").read_text(), entry


def test_hooks_are_generated_from_the_kinds_list() -> None:
    from laart_lab import hookspecs

    assert hookspecs.hook_names() == sorted([f"register_{kind}" for kind in KINDS] + ["register_recipes"])
    manager = create_plugin_manager()
    for kind in KINDS.values():
        caller = getattr(manager.hook, kind.hook)  # a hookspec pluggy knows, taking `register`
        assert caller.spec is not None and caller.spec.argnames == ("register",), kind
        assert kind.base_name in (caller.spec.function.__doc__ or "")


def test_installed_third_party_plugin_is_discovered() -> None:
    entry = get_registry().find("attention", "sliding_window")
    if entry is None:
        pytest.fail("tests/plugin_dists/laart-example-plugin is not installed; `nox -s tests` installs it")
    assert (entry.distribution, entry.version) == ("laart-example-plugin", "0.3.1")


def test_unknown_name_lists_available_names_and_suggests_the_closest() -> None:
    with pytest.raises(UnknownComponentError) as excinfo:
        get_registry().get("attention", "sofmax")
    message = str(excinfo.value)
    assert "Did you mean 'softmax'?" in message
    assert "softmax" in message.split("Available attention names:")[1]


def test_broken_plugin_warns_names_entry_point_and_others_still_load(fake_site) -> None:
    fake_site(
        "laart-broken", "1.0", {"broken": "broken_plugin"}, {"broken_plugin": "raise RuntimeError('boom at import')\n"}
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = get_registry()
    messages = [str(w.message) for w in caught if issubclass(w.category, PluginLoadWarning)]
    assert any("'broken'" in m and "boom at import" in m and "laart-broken" in m for m in messages), messages
    failed = {record.name: record for record in registry.failed_plugins()}
    assert failed["broken"].error == "RuntimeError: boom at import"
    assert registry.find("attention", "softmax") is not None


def test_broken_plugin_shows_as_failed_in_plugins_json(fake_site) -> None:
    fake_site("laart-broken", "1.0", {"broken": "broken_plugin"}, {"broken_plugin": "import does_not_exist_anywhere\n"})
    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    broken = next(p for p in report["plugins"] if p["name"] == "broken")
    assert broken["status"] == "failed" and "does_not_exist_anywhere" in broken["error"]
    assert broken["distribution"] == "laart-broken" and broken["version"] == "1.0"
    assert any(c["name"] == "softmax" and c["status"] == "loaded" for c in report["components"])


def test_duplicate_names_are_an_error_naming_both_distributions(fake_site) -> None:
    duplicate = GOOD_PLUGIN.replace('"echo"', '"softmax"')
    fake_site("laart-copycat", "2.0", {"copycat": "copycat_plugin"}, {"copycat_plugin": duplicate})
    with pytest.raises(DuplicateComponentError) as excinfo:
        get_registry()
    message = str(excinfo.value)
    assert "laart-lab" in message and "laart-copycat 2.0" in message and "'softmax'" in message
    result = run_cli("plugins")
    assert result.returncode == 1 and "laart-copycat" in result.stderr


def test_misspelt_hook_is_an_error_not_ignored(fake_site) -> None:
    misspelt = GOOD_PLUGIN.replace("def register_attention", "def register_atention")
    fake_site("laart-typo", "0.1", {"typo": "typo_plugin"}, {"typo_plugin": misspelt})
    with pytest.warns(PluginLoadWarning, match="register_atention"):
        registry = get_registry()
    assert [r.name for r in registry.failed_plugins()] == ["typo"]
    assert "unknown hook" in registry.failed_plugins()[0].error


def test_autoload_disabled_loads_only_builtins_and_the_allow_list(fake_site, monkeypatch) -> None:
    fake_site("laart-echo", "1.2", {"echo_plugin": "echo_plugin"}, {"echo_plugin": GOOD_PLUGIN})
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    registry = get_registry()
    assert registry.find("attention", "echo") is None
    assert registry.find("attention", "sliding_window") is None
    assert registry.find("attention", "softmax") is not None

    from laart_lab.registry import reset_registry

    reset_registry()
    monkeypatch.setenv(ALLOWLIST_ENV, "echo_plugin")
    registry = get_registry()
    assert registry.get("attention", "echo").distribution == "laart-echo"
    assert registry.find("attention", "sliding_window") is None


def test_plugin_registered_at_run_time() -> None:
    plugin = types.ModuleType("runtime_plugin")
    exec(GOOD_PLUGIN, plugin.__dict__)
    registry = registry_with(plugin)
    assert registry.get("attention", "echo").cls.__name__ == "Echo"


def test_registering_a_class_of_the_wrong_kind_is_rejected() -> None:
    plugin = types.ModuleType("wrong_kind")

    @laart_lab.hookimpl
    def register_reasoner(register):
        register("not_a_reasoner", dict)

    plugin.register_reasoner = register_reasoner
    with pytest.raises(InvalidComponentError, match="not a subclass of laart_lab.components.reasoner.Reasoner"):
        registry_with(plugin)


# ------------------------------------------------------------------------------------------------
# Registry.resolve: the one way from a name to a class
# ------------------------------------------------------------------------------------------------
#: the Echo plugin renamed from "echo_v0", and moved from the module old_echo_plugin
RENAMED_PLUGIN = ECHO_PLUGIN.replace(
    'register("echo", Echo)', 'register("echo", Echo, aliases=["echo_v0", "old_echo_plugin.Echo"])'
)


def _runtime_plugin(name: str, source: str) -> types.ModuleType:
    plugin = types.ModuleType(name)
    exec(source, plugin.__dict__)
    return plugin


def test_resolve_takes_a_name_a_class_path_or_a_class() -> None:
    from laart_lab.attention.softmax import SoftmaxAttention

    registry = get_registry()
    assert registry.resolve("attention", "softmax") is SoftmaxAttention
    assert registry.resolve("attention", "laart_lab.attention.softmax.SoftmaxAttention") is SoftmaxAttention
    assert registry.resolve("attention", "laart_lab.attention.softmax:SoftmaxAttention") is SoftmaxAttention
    assert registry.resolve("attention", SoftmaxAttention) is SoftmaxAttention


def test_resolve_errors_name_the_reference_and_the_choices() -> None:
    registry = get_registry()
    with pytest.raises(UnknownComponentError, match="Did you mean 'linear'"):
        registry.resolve("attention", "linaer")
    with pytest.raises(PluginError, match="'no_such_module.Thing' cannot be imported.*Registered attention names"):
        registry.resolve("attention", "no_such_module.Thing")
    with pytest.raises(
        PluginError,
        match="is not of kind .attention.: not a subclass of laart_lab.components.attention.AttentionBackend",
    ):
        registry.resolve("attention", "laart_lab.data.synthetic.MarkedTokenDataModule")
    with pytest.raises(PluginError, match="unknown component kind 'atention'"):
        registry.resolve("atention", "softmax")


def test_a_renamed_component_keeps_its_old_name_and_class_path_with_a_warning() -> None:
    registry = registry_with(_runtime_plugin("echo_plugin", RENAMED_PLUGIN))
    echo = registry.get("attention", "echo").cls
    for old in ("echo_v0", "old_echo_plugin.Echo", "old_echo_plugin:Echo"):
        with pytest.warns(DeprecatedNameWarning, match=f"'{old}' is a deprecated name of 'echo'"):
            assert registry.resolve("attention", old) is echo
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert registry.resolve("attention", old) is echo  # warned once, not at every lookup
    assert registry.find("attention", "echo_v0") is None  # find() is the plain index; aliases are not names
    assert "echo_v0" not in registry.names("attention")  # nor offered as suggestions
    listed = {c["name"]: c for c in registry.report()["components"]}
    assert listed["echo_v0"]["status"] == "deprecated name of 'echo'"
    assert listed["echo_v0"]["class"] == listed["echo"]["class"]


def test_an_alias_cannot_shadow_a_registered_name() -> None:
    clash = RENAMED_PLUGIN.replace('aliases=["echo_v0", "old_echo_plugin.Echo"]', 'aliases=["softmax"]')
    with pytest.raises(DuplicateComponentError, match="'softmax'"):
        registry_with(_runtime_plugin("clash_plugin", clash))


def test_component_spec_round_trip_prefers_the_registered_name() -> None:
    from laart_lab.attention.linear import LinearAttention

    spec = component_spec(functools.partial(LinearAttention, feature_map="relu"), "attention")
    assert spec == {"class_path": "linear", "init_args": {"feature_map": "relu"}}
    rebuilt = component_factory(spec, "attention")
    assert rebuilt.func is LinearAttention and rebuilt.keywords == {"feature_map": "relu"}
    assert component_factory(None, "attention") is None
    with pytest.raises(UnknownComponentError, match="Did you mean 'linear'"):
        component_factory({"class_path": "lineer"}, "attention")


def test_component_spec_does_not_import_other_lazily_registered_components(monkeypatch) -> None:
    from laart_lab.attention.softmax import SoftmaxAttention

    reset_registry()
    for module in [m for m in sys.modules if m.startswith("laart_lab.memory")]:
        monkeypatch.delitem(sys.modules, module)
    assert component_spec(SoftmaxAttention, "attention")["class_path"] == "softmax"
    assert component_spec(SoftmaxAttention, "memory")["class_path"].endswith("SoftmaxAttention")  # not a memory
    assert not any(m.startswith("laart_lab.memory") for m in sys.modules)
