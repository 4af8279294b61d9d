"""The plugin registry: discovery through entry points, provenance, and its errors."""

from __future__ import annotations

import json
import types
import warnings

import pytest

import laart_lab
from laart_lab.components import AttentionBackend
from laart_lab.registry import (
    ALLOWLIST_ENV,
    AUTOLOAD_ENV,
    DuplicateComponentError,
    InvalidComponentError,
    PluginLoadWarning,
    UnknownComponentError,
    get_registry,
    registry_with,
)
from tests.conftest import run_cli

GOOD_PLUGIN = """
import laart_lab
from laart_lab.components import AttentionBackend

class Echo(AttentionBackend):
    def forward(self, q, k, v, causal=False, key_padding_mask=None):
        return v

@laart_lab.hookimpl
def register_attention(register):
    register("echo", Echo)
"""


def test_builtin_components_come_from_the_laart_lab_distribution() -> None:
    entry = get_registry().get("attention", "softmax")
    assert entry.distribution == "laart-lab"
    assert entry.version == laart_lab.__version__
    assert issubclass(entry.cls, AttentionBackend)
    assert get_registry().get("datamodule", "marked_token").plugin == "builtin_quickstart"


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
