"""Built-in data modules (kind ``datamodule``; subclasses of ``lightning.pytorch.LightningDataModule``).

Adding a data set: write its module in ``laart_lab/data/``, add one ``register(...)`` line here, and a
recipe in ``recipes/`` that selects it by name (``data: {class_path: <name>}``).
"""

from __future__ import annotations

from laart_lab.hookspecs import RegisterComponent, hookimpl


@hookimpl
def register_datamodule(register: RegisterComponent) -> None:
    register("marked_token", "laart_lab.data.synthetic:MarkedTokenDataModule")  # the quickstart's synthetic data
    register("text", "laart_lab.data.text:TextDataModule")  # character / byte language modelling
    register("recall", "laart_lab.data.recall:RecallDataModule")  # long-range recall beyond the context window
    register("clutrr", "laart_lab.data.clutrr:ClutrrDataModule")  # CLUTRR (real or generated), graph or text view
    # continual learning: streams that change in stages
    register("continual_text", "laart_lab.data.continual:ContinualTextDataModule")  # corpora in stages
    register("continual_kinship", "laart_lab.data.continual:ContinualKinshipDataModule")  # relations in stages
