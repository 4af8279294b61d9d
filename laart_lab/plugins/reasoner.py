"""Built-in relational reasoners (kind ``reasoner``; base class :class:`laart_lab.components.Reasoner`).

The SLRM (:class:`~laart_lab.reasoning.slrm.SLRM`) and its baselines (:mod:`laart_lab.reasoning.baselines`).
"""

from __future__ import annotations

from laart_lab.hookspecs import RegisterComponent, hookimpl


@hookimpl
def register_reasoner(register: RegisterComponent) -> None:
    register("slrm", "laart_lab.reasoning.slrm:SLRM")
    register("gru", "laart_lab.reasoning.baselines:GRUReasoner")
    register("transformer", "laart_lab.reasoning.baselines:TransformerPathReasoner")
    register("gnn", "laart_lab.reasoning.baselines:GNNReasoner")
