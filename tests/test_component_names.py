"""The jsonargparse hook (:mod:`laart_lab.component_names`): registered names as ``class_path`` values.

It wraps a private jsonargparse function, so these tests parse for real with jsonargparse and compare
with what the registry says; the first test fails first if a jsonargparse upgrade moves the function.
"""

from __future__ import annotations

import inspect
import sys
import types
import warnings

import pytest
from jsonargparse import ArgumentParser, _from_config, _typehints
from lightning.pytorch.loggers import Logger

from laart_lab import component_names
from laart_lab.components.attention import AttentionBackend, AttentionFactory
from laart_lab.registry import (
    DeprecatedNameWarning,
    UnknownComponentError,
    get_registry,
    import_class_path,
    registry_with,
    reset_registry,
)

ALIASED = """
import laart_lab
from laart_lab.components import AttentionBackend

class Renamed(AttentionBackend):
    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, q, k, v, causal=False, key_padding_mask=None):
        return v * self.scale

@laart_lab.hookimpl
def register_attention(register):
    register("renamed", Renamed, aliases=["before_rename"])
"""


@pytest.fixture
def installed() -> None:
    component_names.install()
    assert component_names.installed()


def parse(value: str, hint: object = AttentionBackend) -> str:
    """The class_path jsonargparse resolves for ``--component VALUE`` of type ``hint``."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--component", type=hint)
    return parser.parse_args(["--component", value]).component.class_path


def test_the_wrapped_jsonargparse_function_is_where_and_what_we_expect() -> None:
    # if this fails after a jsonargparse upgrade, component_names must follow the function (see its docstring)
    original = component_names._original_resolve
    assert original.__module__ == "jsonargparse._typehints" and original.__name__ == "resolve_class_path_by_name"
    assert list(inspect.signature(original).parameters) == ["cls", "name"]
    assert "resolve_class_path_by_name" in vars(_from_config)  # imported by name there too: both are patched
    assert original(AttentionBackend, "laart_lab.attention.softmax.SoftmaxAttention") == (
        "laart_lab.attention.softmax.SoftmaxAttention"
    )


def test_install_is_idempotent_and_patches_both_modules() -> None:
    component_names.install()
    component_names.install()
    assert _typehints.resolve_class_path_by_name is component_names.resolve_class_path
    assert _from_config.resolve_class_path_by_name is component_names.resolve_class_path
    assert component_names._original_resolve is not component_names.resolve_class_path  # no self-wrapping


@pytest.mark.usefixtures("installed")
@pytest.mark.parametrize("name", ["softmax", "linear", "sliding_window"])
def test_a_registered_name_resolves_to_the_registered_class(name: str) -> None:
    expected = get_registry().get("attention", name).cls
    assert import_class_path(parse(name)) is expected
    assert import_class_path(parse(name, AttentionFactory)) is expected  # the factory hints models use


@pytest.mark.usefixtures("installed")
def test_class_names_and_class_paths_still_resolve_as_jsonargparse_does() -> None:
    from laart_lab.attention.softmax import SoftmaxAttention

    # jsonargparse's own: the name of an imported subclass, and a full path (it may shorten it to a re-export)
    assert import_class_path(parse("SoftmaxAttention")) is SoftmaxAttention
    assert import_class_path(parse("laart_lab.attention.softmax.SoftmaxAttention")) is SoftmaxAttention
    not_a_kind = component_names.resolve_class_path(Logger, "TensorBoardLogger")  # falls through to jsonargparse
    assert not_a_kind == component_names._original_resolve(Logger, "TensorBoardLogger")
    assert not_a_kind.endswith(".TensorBoardLogger")


@pytest.mark.usefixtures("installed")
def test_an_unknown_name_fails_with_the_registry_message() -> None:
    with pytest.raises(UnknownComponentError) as excinfo:
        component_names.resolve_class_path(AttentionBackend, "sofmax")
    assert str(excinfo.value) == get_registry().unknown_message("attention", "sofmax")
    assert "Did you mean 'softmax'?" in str(excinfo.value)
    with pytest.raises(Exception, match="no attention named 'sofmax' is registered. Did you mean 'softmax'"):
        parse("sofmax")


@pytest.mark.usefixtures("installed")
def test_a_deprecated_alias_resolves_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = types.ModuleType("aliased_plugin")
    exec(ALIASED, plugin.__dict__)
    monkeypatch.setitem(sys.modules, "aliased_plugin", plugin)  # importable, as an installed plugin is
    reset_registry(registry_with(plugin))
    with pytest.warns(DeprecatedNameWarning, match="'before_rename' is a deprecated name of 'renamed'"):
        assert parse("before_rename") == "aliased_plugin.Renamed"
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecatedNameWarning)
        assert parse("renamed") == "aliased_plugin.Renamed"  # the current name does not warn
