"""``CTMConfig``: every hyper-parameter of the Continuous Thought Machine, documented and checked once.

One dataclass is passed down, as nanoGPT passes its ``GPTConfig``: the core takes it
(``ContinuousThoughtMachine(d_input, out_shape, config)``) and the two wrappers build it from their flat
keyword arguments (``ParityCTM(seq_len=16, iterations=24, ...)``, ``CTMReasoner(num_relations,
iterations=12, ...)``). Recipes, command-line overrides (``--model.init_args.iterations 40``) and the
hyper-parameters saved in checkpoints therefore stay flat and plain: a wrapper takes the CTM fields as
``**ctm`` and calls ``CTMConfig(**ctm)``. jsonargparse follows that call and offers (and type-checks) every
field as a flat argument of the wrapper, with the defaults and the help below; :func:`with_ctm_fields` shows
the same fields to ``inspect.signature``, so ``laart-lab check`` names a misspelt field with its close match.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

DECAY_RANGE = (0.0, 15.0)  #: the learnable decay r of a synchronised pair is clamped to this range


@dataclass(frozen=True)
class CTMConfig:
    """Hyper-parameters of :class:`laart_ctm.core.ContinuousThoughtMachine` (the paper's defaults).

    Args:
        iterations: internal ticks ``T``.
        d_model: number of neurons ``D``.
        memory_length: pre-activation history ``M`` each neuron-level model reads.
        heads: attention heads; ``d_attention`` must be divisible by it.
        d_attention: width of the attention (keys, values, query and its output).
        n_sync_out: neuron pairs whose synchronisation is the output representation.
        n_sync_action: neuron pairs whose synchronisation forms the attention query.
        self_pairs: how many of the pairs of each read-out pair a neuron with itself.
        synapse_depth: 1 for an MLP synapse, > 1 for a U-Net synapse.
        nlm_hidden: hidden width of each neuron's private MLP (0: a single private GLU layer).
        dropout: dropout in synapse, NLMs and attention.
        pairing_seed: seed of the random choice of synchronised neuron pairs.
        action_decay_init: initial decay rate r of every action pair (the paper: 0, i.e. all ticks weigh
            the same). A positive decay makes the attention query follow recent ticks, which helps tasks
            that must move their attention from token to token (parity).
        out_decay_init: initial decay rate r of every output pair.
        nlm_init_gain: scale of the NLMs' initial weights (1: the paper's init; see
            :class:`laart_ctm.nlm.NeuronLevelModels`).
    """

    iterations: int = 16
    d_model: int = 128
    memory_length: int = 8
    heads: int = 4
    d_attention: int = 64
    n_sync_out: int = 64
    n_sync_action: int = 32
    self_pairs: int = 0
    synapse_depth: int = 1
    nlm_hidden: int = 8
    dropout: float = 0.0
    pairing_seed: int = 0
    action_decay_init: float = 0.0
    out_decay_init: float = 0.0
    nlm_init_gain: float = 1.0

    def __post_init__(self) -> None:
        low, high = DECAY_RANGE
        rules = {
            "iterations": (self.iterations >= 1, ">= 1"),
            "d_model": (self.d_model >= 1, ">= 1"),
            "memory_length": (self.memory_length >= 1, ">= 1"),
            "heads": (self.heads >= 1 and self.d_attention % self.heads == 0, ">= 1 and divide d_attention"),
            "d_attention": (self.d_attention >= 1, ">= 1"),
            "n_sync_out": (self.n_sync_out >= 1, ">= 1"),
            "n_sync_action": (self.n_sync_action >= 1, ">= 1"),
            "self_pairs": (
                0 <= self.self_pairs <= min(self.n_sync_out, self.n_sync_action),
                "in [0, min(n_sync_out, n_sync_action)]",
            ),
            "synapse_depth": (self.synapse_depth >= 1, ">= 1"),
            "nlm_hidden": (self.nlm_hidden >= 0, ">= 0"),
            "dropout": (0.0 <= self.dropout < 1.0, "in [0, 1)"),
            "action_decay_init": (low <= self.action_decay_init <= high, f"in [{low:g}, {high:g}]"),
            "out_decay_init": (low <= self.out_decay_init <= high, f"in [{low:g}, {high:g}]"),
            "nlm_init_gain": (self.nlm_init_gain > 0, "> 0"),
        }
        bad = [
            f"{name}={getattr(self, name)!r} (must be {rule})" for name, (ok, rule) in rules.items() if not ok
        ]
        if bad:
            raise ValueError(f"invalid CTM arguments: {'; '.join(bad)}")

    def as_dict(self) -> dict[str, Any]:
        """The fields as plain values (what checkpoints keep as hyper-parameters)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CTMReasonerConfig(CTMConfig):
    """The ``ctm`` reasoner's CTM defaults: fewer ticks and a shorter history than the paper's (CLUTRR
    paths are a few relations long). Every other field is :class:`CTMConfig`'s."""

    iterations: int = 12
    memory_length: int = 6


def check_ctm_fields(config: type[CTMConfig], given: dict[str, Any], owner: str) -> None:
    """Raise one line naming each key of ``given`` that is no field of ``config`` (with its close match)."""
    names = [f.name for f in dataclasses.fields(config)]
    unknown = [key for key in given if key not in names]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TypeError(f"{owner} has no argument {', '.join(hints)}; the CTM fields are: {', '.join(names)}")


Wrapper = TypeVar("Wrapper", bound=type)


def with_ctm_fields(config: type[CTMConfig]) -> typing.Callable[[Wrapper], Wrapper]:
    """Class decorator: ``inspect.signature(cls)`` lists ``config``'s fields in place of ``**ctm``.

    jsonargparse already reads the fields through the ``CTMConfig(**ctm)`` call in ``__init__``; tools that
    look only at the signature (``laart-lab check``, the data-fact filling of ``laart-lab fit``) then see
    them too: each field as a keyword-only argument with its type and default.
    """

    def decorate(cls: Wrapper) -> Wrapper:
        signature = inspect.signature(cls.__init__)
        hints = typing.get_type_hints(config)
        own = [
            p for name, p in signature.parameters.items() if name != "self" and p.kind is not p.VAR_KEYWORD
        ]
        fields = [
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name]
            )
            for f in dataclasses.fields(config)
        ]
        cls.__signature__ = signature.replace(parameters=[*own, *fields])  # type: ignore[attr-defined]
        return cls

    return decorate
