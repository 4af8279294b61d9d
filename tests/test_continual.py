"""Continual learning: metrics against hand-worked matrices, staged data modules, replay, growable SLRM
concepts, the matrix callback against Lightning's own validation, and the benchmark's smoke mode."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from laart_lab.callbacks.continual import ContinualMatrix, StageConceptGrowth
from laart_lab.continual_metrics import continual_metrics
from laart_lab.data.continual import (
    KINSHIP_STAGES,
    PYTHON_STDLIB_MODULES,
    ContinualKinshipDataModule,
    ContinualTextDataModule,
    python_stdlib_files,
)
from laart_lab.models.charlm import CharLM
from laart_lab.models.reasoning import RelationReasoning
from laart_lab.reasoning.slrm import SLRM

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------- metrics
def test_metrics_hand_worked_accuracy_matrix() -> None:
    # rows: after stage 0, 1, 2; columns: tasks 0, 1, 2 (one task a stage)
    matrix = [[0.9, 0.1, 0.2], [0.5, 0.8, 0.3], [0.6, 0.4, 0.7]]
    m = continual_metrics(matrix, initial=[0.1, 0.2, 0.1], higher_is_better=True)
    assert m["final_average"] == pytest.approx((0.6 + 0.4 + 0.7) / 3)
    assert m["learning"] == pytest.approx((0.9 + 0.8 + 0.7) / 3)
    assert m["backward_transfer"] == pytest.approx(((0.6 - 0.9) + (0.4 - 0.8)) / 2)  # -0.35
    assert m["forgetting"] == pytest.approx(((0.9 - 0.6) + (0.8 - 0.4)) / 2)  # 0.35
    # task 0 fell to 0.5 after stage 1 (drop 0.4); task 1 to 0.4 after stage 2 (drop 0.4); task 2: no later row
    assert m["interim_forgetting"] == pytest.approx(0.4)
    # what stage 0 did for task 1 before it was trained (0.1 vs 0.2 untrained), stage 1 for task 2 (0.3 vs 0.1)
    assert m["forward_transfer"] == pytest.approx(((0.1 - 0.2) + (0.3 - 0.1)) / 2)


def test_metrics_hand_worked_bpc_matrix_with_a_returning_task() -> None:
    # Shakespeare (task 0) -> Python (task 1) -> Shakespeare; bits per character, lower is better
    matrix = [[2.0, 5.0], [3.0, 2.5], [1.8, 3.5]]
    m = continual_metrics(matrix, stage_tasks=[0, 1, 0], initial=[8.0, 8.0], higher_is_better=False)
    assert m["final_average"] == pytest.approx((1.8 + 3.5) / 2)
    assert m["learning"] == pytest.approx((2.0 + 2.5 + 1.8) / 3)
    assert m["backward_transfer"] == pytest.approx(-(3.5 - 2.5))  # Python got 1 bpc worse after its stage
    assert m["forgetting"] == pytest.approx(3.5 - 2.5)  # best earlier Python score 2.5, final 3.5
    # Shakespeare: 2.0 -> 3.0 after Python (1.0 worse, recovered later); Python: 2.5 -> 3.5
    assert m["interim_forgetting"] == pytest.approx(1.0)
    assert m["forward_transfer"] == pytest.approx(8.0 - 5.0)  # Shakespeare training helped Python by 3 bpc
    one = continual_metrics([[0.5]], initial=[0.1])
    assert one["backward_transfer"] is None and one["forgetting"] is None and one["forward_transfer"] is None


def test_metrics_reject_malformed_input() -> None:
    with pytest.raises(ValueError, match="no rows"):
        continual_metrics([])
    with pytest.raises(ValueError, match="one score per task"):
        continual_metrics([[0.1, 0.2], [0.3]])
    with pytest.raises(ValueError, match="stage tasks"):
        continual_metrics([[0.1, 0.2]], stage_tasks=[0, 1])
    with pytest.raises(ValueError, match="initial"):
        continual_metrics([[0.1, 0.2]], initial=[0.0])


# ---------------------------------------------------------------------------------------- data
def small_kinship(**kwargs) -> ContinualKinshipDataModule:
    args = dict(
        stage_epochs=[1, 1, 1], generated_train_rows=1500, generated_test_rows=150, max_train_per_stage=60,
        max_test_per_stage=30, batch_size=16, replay_buffer=10,
    )  # fmt: skip
    args.update(kwargs)
    return ContinualKinshipDataModule(**args)


def test_stage_schedule_and_errors() -> None:
    data = small_kinship(stage_epochs=[2, 1, 3])
    assert [data.stage_of_epoch(e) for e in range(6)] == [0, 0, 1, 2, 2, 2]
    assert [data.is_stage_end(e) for e in range(6)] == [False, True, True, False, False, True]
    assert [data.is_stage_start(e) for e in range(6)] == [True, False, True, True, False, False]
    with pytest.raises(ValueError, match="set trainer.max_epochs to 6"):
        data.stage_of_epoch(6)
    with pytest.raises(ValueError, match="stage_epochs"):
        ContinualKinshipDataModule(stage_epochs=[])
    with pytest.raises(ValueError, match="replay"):
        ContinualKinshipDataModule(replay=1.0)
    with pytest.raises(ValueError, match="relation stages"):
        ContinualKinshipDataModule(stage_epochs=[1, 1])


def test_kinship_stages_hold_only_their_relations_and_a_new_one() -> None:
    data = small_kinship()
    data.setup("fit")
    allowed: set[str] = set()
    for stage, added in enumerate(KINSHIP_STAGES):
        allowed |= set(added)
        for split in ("train", "val", "test"):
            rows = data._build()[split][stage]
            assert rows, (stage, split)
            for example in rows:
                used = {example.target, *(r for _, _, r in example.edges)}
                assert used <= allowed
                if stage > 0:  # not already a story of an earlier stage
                    assert used & set(added)
    ids = [{e.id for e in data._build()[s][0]} for s in ("train", "val")]
    assert not ids[0] & ids[1]  # validation is held out of training
    assert data.relation_names == sorted({r for s in KINSHIP_STAGES for r in s})


def test_kinship_replay_share_and_fixed_buffer() -> None:
    data = small_kinship(replay=0.2)
    data.setup("fit")
    buffer = data.replay_items(2)
    assert len(buffer) == 20 and buffer == data.replay_items(2)  # 10 per earlier stage, the same every time
    stage1 = {e.id for e in data._build()["train"][1]}
    earlier = {e.id for s in (0, 1) for e in data._build()["train"][s]}
    drawn = data.replay_draw(2, epoch=5, n=50)
    assert len(drawn) == 50 and {e.id for e in drawn} <= {e.id for e in buffer} <= earlier
    assert data.replay_draw(0, epoch=0, n=50) == []  # nothing to replay in the first stage
    assert not ({e.id for e in data.replay_items(1)} & stage1)  # stage 1's buffer holds stage 0 only
    n_stage = len(data._build()["train"][2])
    assert round(n_stage * 0.2 / 0.8) == len(data.replay_draw(2, 2, round(n_stage * 0.2 / 0.8)))


def text_data(tmp_path: Path, **kwargs) -> ContinualTextDataModule:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("abcdefgh" * 2000)
    b.write_text("0123456789" * 2000)
    args = dict(
        stages=[str(a), str(b), str(a)], stage_epochs=[1, 1, 1], block_size=8, batch_size=4, eval_batch_size=2,
        steps_per_epoch=5, eval_tokens=256, replay_buffer=6,
    )  # fmt: skip
    args.update(kwargs)
    return ContinualTextDataModule(**args)


class _FakeTrainer:
    def __init__(self, epoch: int) -> None:
        self.current_epoch, self.reload_dataloaders_every_n_epochs = epoch, 1


def test_text_streams_replay_rows_and_tasks(tmp_path: Path) -> None:
    data = text_data(tmp_path, replay=0.5)
    data.setup("fit")
    assert data.task_names == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")] and data.stage_tasks == [0, 1, 0]
    data.trainer = _FakeTrainer(1)  # type: ignore[assignment]
    batches = list(data.train_dataloader())
    assert len(batches) == 5
    for i, batch in enumerate(batches):
        assert batch["input"].shape == (4, 8)
        assert torch.equal(batch["input"][:, 1:], batch["target"][:, :-1])
        stream, replayed = batch["input"][:2], batch["input"][2:]
        assert bool((stream >= ord("0")).all() and (stream <= ord("9")).all())  # stage 1 is corpus b
        assert bool((replayed >= ord("a")).all() and (replayed <= ord("h")).all())  # replay: corpus a
        assert bool(batch["stream_start"][2:].all()) and bool(batch["stream_start"][:2].all()) == (i == 0)
        if i:  # stream rows continue the previous batch's text
            assert torch.equal(batches[i - 1]["target"][:2, -1], batch["input"][:2, 0])
    data.trainer = _FakeTrainer(3)  # type: ignore[assignment]
    with pytest.raises(ValueError, match="set trainer.max_epochs to 3"):
        data.train_dataloader()
    data.trainer = _FakeTrainer(0)  # type: ignore[assignment]
    data.trainer.reload_dataloaders_every_n_epochs = 0  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="reload_dataloaders_every_n_epochs: 1"):
        data.train_dataloader()


def test_text_eval_loader_covers_the_split_start_in_streams(tmp_path: Path) -> None:
    data = text_data(tmp_path)
    data.setup("fit")
    loader = list(data.eval_loader(1, "val"))
    rows = torch.cat([b["input"] for b in loader], dim=1)  # stream r = row r of every batch, concatenated
    tokens = torch.from_numpy(data._tokens[data.corpora[1]]["val"].astype("int64"))
    stream = rows.shape[1]
    for r in range(rows.shape[0]):
        assert torch.equal(rows[r], tokens[r * stream : (r + 1) * stream])
    assert bool(loader[0]["stream_start"].all()) and not bool(loader[1]["stream_start"].any())
    with pytest.raises(FileNotFoundError, match="python_stdlib"):
        ContinualTextDataModule(stages=["/no/such.txt"], stage_epochs=[1])._load()


def test_python_stdlib_corpus_files() -> None:
    files = python_stdlib_files()
    assert len(files) == len(PYTHON_STDLIB_MODULES) and all(f.is_file() and f.suffix == ".py" for f in files)
    assert files[PYTHON_STDLIB_MODULES.index("collections")].name == "__init__.py"


# ---------------------------------------------------------------------------------------- SLRM concepts
def test_growable_slrm_masks_grows_merges_and_retires() -> None:
    torch.manual_seed(0)
    plain = SLRM(num_relations=4, num_concepts=4)
    assert "concept_active" not in plain.state_dict()  # old checkpoints still load (strict)
    with pytest.raises(ValueError, match="initial_concepts"):
        plain.grow_concepts(1)
    slrm = SLRM(num_relations=4, num_concepts=4, initial_concepts=1)
    table = slrm.composition_tensor().detach()
    assert float(table[..., 5:].max()) < 1e-6  # inactive concepts receive no composition mass
    assert torch.allclose(table.sum(-1), torch.ones(8, 8))
    rows = slrm.grow_concepts(2)
    assert rows.tolist() == [5, 6] and slrm.num_active_concepts == 3
    assert float(slrm.composition_tensor().detach()[..., 7].max()) < 1e-6
    with torch.no_grad():  # make concept 2 a copy of concept 1: they should merge into one
        slrm.box_min[6] = slrm.box_min[5]
        slrm.box_log_side[6] = slrm.box_log_side[5]
    merged = slrm.merge_concepts(0.9)
    assert len(merged) == 1 and set(merged[0]) == {1, 2} and slrm.num_active_concepts == 2
    usage = slrm.concept_usage()
    assert int(usage.sum()) == int((slrm.composition_tensor()[:4, :4].argmax(-1) >= 4).sum())
    retired = slrm.retire_concepts(min_usage=10**6)
    assert slrm.num_active_concepts == 0 and len(retired) == 2
    state = slrm.state_dict()
    again = SLRM(num_relations=4, num_concepts=4, initial_concepts=4)
    again.load_state_dict(state)
    assert again.num_active_concepts == 0


# ---------------------------------------------------------------------------------------- callbacks
def _trainer(data, callbacks, tmp_path: Path) -> Trainer:
    return Trainer(
        max_epochs=data.total_epochs, reload_dataloaders_every_n_epochs=1, callbacks=callbacks, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
        num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=str(tmp_path),
    )  # fmt: skip


@pytest.mark.slow
def test_matrix_callback_matches_lightning_validation_kinship(tmp_path: Path, one_thread) -> None:
    torch.manual_seed(0)
    data = small_kinship()
    reasoner = lambda n: SLRM(n, dim=8, hidden=16, num_concepts=6, initial_concepts=2)  # noqa: E731
    model = RelationReasoning(reasoner, relation_names=data.relation_names)
    matrix = ContinualMatrix(metric="acc", out=str(tmp_path / "continual.json"))
    growth = StageConceptGrowth(grow_per_stage=2, think=False)
    trainer = _trainer(data, [matrix, growth], tmp_path)
    trainer.fit(model, data)
    result = json.loads((tmp_path / "continual.json").read_text())
    assert len(result["matrix"]["test"]) == 3 and all(len(r) == 3 for r in result["matrix"]["test"])
    assert [s["concepts"] for s in result["stages"]] == [2, 4, 6]  # 2 grown at each new stage
    assert [s["grown"] for s in result["stages"]] == [0, 2, 2]
    trainer.limit_val_batches = 1.0
    validated = trainer.validate(model, data, verbose=False)[0]["val/acc"]  # the last stage's validation set
    assert result["matrix"]["val"][-1][2] == pytest.approx(validated, abs=1e-6)
    expected = continual_metrics(result["matrix"]["test"], [0, 1, 2], result["initial"]["test"])
    assert result["metrics"]["test"] == expected
    assert result["task_names"] == ["blood", "in-laws", "spouses"]


@pytest.mark.slow
def test_matrix_callback_matches_lightning_validation_text(tmp_path: Path, one_thread) -> None:
    torch.manual_seed(0)
    data = text_data(tmp_path)
    model = CharLM(vocab_size=256, block_size=8, d_model=16, n_layers=1, n_heads=2, warmup_steps=1)
    matrix = ContinualMatrix(metric="auto")
    trainer = _trainer(data, [matrix], tmp_path)
    trainer.fit(model, data)
    result = matrix.result
    assert result["metric"] == "bpc" and result["stage_tasks"] == [0, 1, 0]
    assert len(result["matrix"]["val"]) == 3 and all(len(r) == 2 for r in result["matrix"]["val"])
    trainer.limit_val_batches = 1.0
    validated = trainer.validate(model, data, verbose=False)[0]["val/bpc"]  # the last stage's task: corpus a
    assert result["matrix"]["val"][-1][0] == pytest.approx(validated, rel=1e-5)
    assert all(math.isfinite(v) for row in result["matrix"]["test"] for v in row)


def test_callbacks_need_a_staged_data_module(tmp_path: Path) -> None:
    from laart_lab.data.synthetic import MarkedTokenDataModule

    class _T:
        datamodule = MarkedTokenDataModule()

    with pytest.raises(ValueError, match="staged data module"):
        ContinualMatrix().on_train_start(_T(), None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="metric"):
        ContinualMatrix(metric="loss")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- benchmark
@pytest.mark.slow
def test_benchmark_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # kept on sys.path for the whole test: the benchmark's spawned workers import it by name
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import continual as bench

    assert bench.main(["--smoke", "--out-dir", str(tmp_path), "--jobs", "2"]) == 0
    for stream, arms in bench.ARMS.items():
        report = json.loads((tmp_path / f"continual_{stream}_smoke.json").read_text())
        assert list(report["summary_test"]) == list(arms)
        assert (tmp_path / f"continual_{stream}_smoke.png").stat().st_size > 0
        for run in report["runs"]:
            assert len(run["matrix"]["test"]) == 3
            expected = continual_metrics(
                run["matrix"]["test"], run["stage_tasks"], run["initial"]["test"], run["higher_is_better"]
            )
            assert run["metrics"]["test"] == expected
        nothink = [r for r in report["runs"] if r["arm"] == "growth_nothink"][0]
        assert all(s["merges"] == 0 and s["retired"] == 0 for s in nothink["stages"])
