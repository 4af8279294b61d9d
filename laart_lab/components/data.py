"""The data-module contracts: the facts a data module offers a model, and the batches each model reads.

**Data facts.** A data module knows things a model must be built with (vocabulary size, relation
names, sequence length). It declares them by implementing :class:`OffersDataFacts`; before the model is
built, the CLI gives every model init argument of the same name that the recipe left unset (or ``None``)
the fact's value (:func:`match_data_facts`). The values then live in the model's hyper-parameters and its
checkpoints. A fact that matches no argument of the model is reported (a data module paired with a model
it was not meant for, or a misnamed argument), not silently dropped.

**Batches.** What each model family's ``training_step`` receives:

* ``CharLM``: a :class:`TokenBatch` dict (``text``, ``recall`` data modules);
* ``SequenceClassifier``: a ``(tokens long[B, T], labels long[B])`` tuple (:data:`ClassificationBatch`);
* ``RelationReasoning``: :class:`laart_lab.components.reasoner.ReasoningBatch` (``clutrr``, graph view);
* ``LaartModel``: :class:`laart_lab.data.clutrr_text.LaartBatch` (``clutrr`` with ``view: text``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict, runtime_checkable

from torch import Tensor
from typing_extensions import NotRequired


@runtime_checkable
class OffersDataFacts(Protocol):
    """A data module that tells the model facts it needs. Called before ``prepare_data``/``setup``."""

    def data_facts(self) -> dict[str, Any]:
        """``{model init argument name: value}``; plain data only (it is stored in checkpoints)."""
        ...


class TokenBatch(TypedDict):
    """A language-model batch: predict ``target[b, t]`` from ``input[b, :t+1]``."""

    input: Tensor  #: long [B, T] token ids
    target: Tensor  #: long [B, T] next-token ids; -100 is ignored by the loss
    stream_start: NotRequired[Tensor]  #: bool [B] True where a row starts a new stream (memory resets there)
    score_mask: NotRequired[Tensor]  #: bool/float [B, T] positions that count for ``acc`` (recall queries)


ClassificationBatch = tuple[Tensor, Tensor]
"""``(tokens long[B, T], labels long[B])``: one class per sequence."""


@dataclass(frozen=True)
class DataFactMatch:
    """How a data module's facts meet a model's init arguments."""

    filled: dict[str, Any]  #: facts given to arguments the recipe left unset
    kept: list[str]  #: facts whose argument the recipe set itself (the recipe wins)
    unmatched: list[str]  #: facts no init argument of the model takes

    def unmatched_message(self, data_name: str, model_name: str) -> str | None:
        if not self.unmatched:
            return None
        return (
            f"data module {data_name} offers fact(s) {', '.join(self.unmatched)} that {model_name} has no "
            "init argument for; they are not used (is this the model the data module is meant for?)"
        )


def match_data_facts(facts: Mapping[str, Any], model_class: type, given: Mapping[str, Any]) -> DataFactMatch:
    """Which of ``facts`` fill ``model_class``'s init arguments, given the recipe's ``given`` arguments."""
    parameters = inspect.signature(model_class).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    filled: dict[str, Any] = {}
    kept, unmatched = [], []
    for key, value in facts.items():
        if key not in parameters and not takes_any:
            unmatched.append(key)
        elif given.get(key) is None:
            filled[key] = value
        else:
            kept.append(key)
    return DataFactMatch(filled, kept, unmatched)
