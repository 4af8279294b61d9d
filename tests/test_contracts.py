"""The declared contracts in laart_lab.components: data facts, reasoner inspection protocols, batches."""

from __future__ import annotations

import pytest
import torch
import yaml

from laart_lab import component_names
from laart_lab.components.data import OffersDataFacts, match_data_facts
from laart_lab.components.reasoner import (
    ComposesRelations,
    ExplainsDerivations,
    HasRelationBoxes,
    InventsRelations,
    Reasoner,
)
from laart_lab.paths import data_root
from laart_lab.recipes import list_recipes
from laart_lab.registry import get_registry

pytestmark = pytest.mark.usefixtures("one_thread")


class _Model:
    def __init__(self, vocab_size: int | None = None, block_size: int = 64, lr: float = 1e-3) -> None: ...


class _AnyModel:
    def __init__(self, d_model: int = 8, **kwargs: object) -> None: ...


def test_match_data_facts_fills_unset_keeps_given_and_reports_the_rest() -> None:
    facts = {"vocab_size": 65, "block_size": 128, "relation_names": ["father"]}
    match = match_data_facts(facts, _Model, {"block_size": 32, "lr": 0.1})
    assert match.filled == {"vocab_size": 65}
    assert match.kept == ["block_size"]  # the recipe's own value wins
    assert match.unmatched == ["relation_names"]
    message = match.unmatched_message("ClutrrDataModule", "_Model")
    assert message is not None and "relation_names" in message and "_Model" in message
    # an argument given as None counts as unset
    assert match_data_facts({"block_size": 9}, _Model, {"block_size": None}).filled == {"block_size": 9}


def test_a_model_taking_kwargs_accepts_every_fact() -> None:
    match = match_data_facts({"anything": 1}, _AnyModel, {})
    assert match.filled == {"anything": 1} and match.unmatched == []


def _class(kind: str, reference: str) -> type:
    entry = get_registry().find(kind, reference) if "." not in reference else None
    return component_names.import_class(entry.class_path if entry is not None else reference)


def _recipe_needs_missing_data(recipe: dict) -> bool:
    init = (recipe.get("data") or {}).get("init_args") or {}
    root = data_root()
    name = recipe["data"]["class_path"]
    if name in ("text",) and not init.get("path"):
        return not (root / "tinyshakespeare").exists()
    if name == "clutrr" and init.get("source", "clutrr") == "clutrr":
        return not (root / "clutrr").exists()
    return False


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [r for r in list_recipes() if not r.name.startswith("continual")], ids=str)
def test_every_shipped_recipe_uses_all_the_facts_its_data_module_offers(recipe) -> None:
    config = yaml.safe_load(recipe.path.read_text())
    if _recipe_needs_missing_data(config):
        pytest.skip("needs the reference data under $LAART_LAB_DATA")
    data_class = _class("datamodule", config["data"]["class_path"])
    model_class = _class("model", config["model"]["class_path"])
    if not issubclass(data_class, OffersDataFacts):
        pytest.skip(f"{data_class.__name__} offers no data facts")
    datamodule = data_class(**(config["data"].get("init_args") or {}))
    match = match_data_facts(datamodule.data_facts(), model_class, config["model"].get("init_args") or {})
    assert match.unmatched == [], match.unmatched_message(data_class.__name__, model_class.__name__)


class _BoxReasoner(Reasoner):
    """A third-party reasoner: implements two protocols without subclassing anything but Reasoner."""

    def composition_tensor(self) -> torch.Tensor:
        return torch.full((self.num_relations,) * 3, 1.0 / self.num_relations)

    def relation_labels(self, relation_names: list[str] | None = None) -> list[str]:
        return list(relation_names or [f"r{i}" for i in range(self.num_relations)])


def test_reasoner_protocols_are_structural() -> None:
    from laart_lab.reasoning.baselines import GRUReasoner
    from laart_lab.reasoning.slrm import SLRM

    slrm = SLRM(4, dim=4, hidden=8, num_concepts=2)
    for protocol in (ComposesRelations, ExplainsDerivations, HasRelationBoxes, InventsRelations):
        assert isinstance(slrm, protocol), protocol.__name__
    gru = GRUReasoner(4)
    assert not any(isinstance(gru, p) for p in (ComposesRelations, ExplainsDerivations, HasRelationBoxes))
    third_party = _BoxReasoner(3)
    assert isinstance(third_party, ComposesRelations) and not isinstance(third_party, HasRelationBoxes)


def test_inspection_callbacks_draw_a_third_party_reasoner_and_warn_once_for_one_without_the_method() -> None:
    from lightning.pytorch import LightningModule

    from laart_lab.callbacks.box_volume_stats import BoxVolumeStats
    from laart_lab.callbacks.composition_table_image import CompositionTableImage
    from laart_lab.reasoning.baselines import GRUReasoner

    class Holder(LightningModule):
        def __init__(self, reasoner: Reasoner) -> None:
            super().__init__()
            self.reasoner = reasoner

    table, boxes = CompositionTableImage(), BoxVolumeStats()
    third_party = Holder(_BoxReasoner(3))
    assert table.reasoner(third_party) is third_party.reasoner
    assert boxes.reasoner(third_party) is None

    class NoLoggers:
        loggers: list = []

    with pytest.warns(UserWarning, match="BoxVolumeStats needs a reasoner implementing .*HasRelationBoxes"):
        boxes.setup(NoLoggers(), Holder(GRUReasoner(3)), "fit")  # type: ignore[arg-type]
