"""CLUTRR reading (real release when present), the kinship generator, and the promised errors."""

from __future__ import annotations

import csv
import functools
import json
import zipfile
from pathlib import Path

import pytest
import torch

from laart_lab.data.clutrr import (
    ClutrrDataModule,
    ClutrrFormatError,
    ReasoningCollator,
    parse_csv,
    parse_row,
    read_release,
    relation_path,
)
from laart_lab.data.kinship import COLUMNS, generate_kinship
from laart_lab.paths import data_path
from tests.benchmark_scripts import load_benchmark

CLUTRR_ZIP = data_path("clutrr", "data_089907f8.zip")
needs_clutrr = pytest.mark.skipif(not CLUTRR_ZIP.exists(), reason=f"CLUTRR reference data absent at {CLUTRR_ZIP}")
HEADER = ",".join(["id", "story", "query", "target", "story_edges", "edge_types", "query_edge", "genders"])
GOOD_ROW = '1,"[A] is the father of [B]...","(\'B\', \'C\')",grandfather,"[(0, 1), (1, 2)]","[\'father\', \'father\']","(0, 2)","B:male,A:male,C:male"'  # noqa: E501


@pytest.mark.data
@needs_clutrr
def test_real_release_row_counts_match_the_readme() -> None:
    release = read_release(CLUTRR_ZIP)
    assert release.train_file == "1.2,1.3_train.csv"
    assert len(release.train) == 10094  # README: 10,094 rows
    assert list(release.tests) == [f"1.{k}" for k in range(2, 11)]  # README: test on k=2..10
    assert release.test_k == {f"1.{k}": k for k in range(2, 11)} and release.test_files["1.10"] == "1.10_test.csv"
    sizes = [len(rows) for rows in release.tests.values()]
    assert min(sizes) == 38 and max(sizes) == 190  # README: 38-190 rows each
    first = release.train[0]
    assert first.path == ["father", "sister"] and first.target == "aunt" and first.query == (0, 2)
    assert first.genders == [2, 2, 1]
    assert all(len(e.path) == release.test_k[t] for t, rows in release.tests.items() for e in rows)  # walk keeps k
    assert all(not e.untyped_edges for e in release.train)  # the clean release has no noise edges


@pytest.mark.data
@needs_clutrr
def test_real_datamodule_facts_split_and_loaders() -> None:
    dm = ClutrrDataModule(source="clutrr", batch_size=64, seed=1)
    facts = dm.data_facts()
    assert facts["num_relations"] == len(facts["relation_names"]) == 20
    dm.setup("fit")
    ids_val = {e.id for e in dm.val_set}
    assert not ids_val & {e.id for e in dm.train_set} and len(dm.val_set) == round(10094 * 0.1)
    loaders = dm.test_dataloader()
    assert len(loaders) == 9 and [next(iter(loader)).meta["task_k"] for loader in loaders] == list(range(2, 11))
    assert dm.test_ks == list(range(2, 11)) and dm.test_tasks == [f"1.{k}" for k in range(2, 11)]
    assert dm.state_dict() == {"relation_names": facts["relation_names"]}


def test_walk_with_detour_keeps_k_relations_and_falls_back_to_shortest_path() -> None:
    walk = [(0, 1, "sister"), (1, 2, "mother"), (2, 1, "daughter"), (1, 3, "uncle")]
    assert relation_path(walk, 0, 3) == ["sister", "mother", "daughter", "uncle"]
    not_a_walk = [(1, 3, "uncle"), (0, 1, "sister"), (1, 2, "mother")]
    assert relation_path(not_a_walk, 0, 3) == ["sister", "uncle"]
    assert relation_path(not_a_walk, 3, 0) is None


@functools.cache
def small_generated(seed: int, root: str) -> Path:
    return generate_kinship(Path(root) / f"kin{seed}", seed=seed, train_rows=60, test_rows=8, test_ks=[2, 4, 6])


def test_generator_is_deterministic_per_seed(tmp_path: Path) -> None:
    a = generate_kinship(tmp_path / "a", seed=3, train_rows=50, test_rows=5, test_ks=[2, 5])
    b = generate_kinship(tmp_path / "b", seed=3, train_rows=50, test_rows=5, test_ks=[2, 5])
    c = generate_kinship(tmp_path / "c", seed=4, train_rows=50, test_rows=5, test_ks=[2, 5])
    names = sorted(p.name for p in a.iterdir())
    assert names == ["1.2,1.3_train.csv", "1.2_test.csv", "1.5_test.csv", "config.json"]
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names)
    assert (a / "1.5_test.csv").read_bytes() != (c / "1.5_test.csv").read_bytes()


def test_generated_targets_follow_from_the_rules(tmp_path: Path) -> None:
    """Property: every story's answer is derivable by composing its path with the written rules."""
    out = small_generated(0, str(tmp_path))
    rules = {tuple(pair.split("∘")): r for pair, r in json.loads((out / "config.json").read_text())["rules"].items()}
    assert rules[("father", "father")] == "grandfather" and rules[("son", "wife")] == "daughter-in-law"
    release = read_release(out)
    assert len(release.train) == 60 and {t: len(v) for t, v in release.tests.items()} == {"1.2": 8, "1.4": 8, "1.6": 8}

    def derivable(path: tuple[str, ...]) -> set[str]:
        if len(path) == 1:
            return {path[0]}
        out_set = set()
        for m in range(1, len(path)):
            for a in derivable(path[:m]):
                for b in derivable(path[m:]):
                    if (a, b) in rules:
                        out_set.add(rules[(a, b)])
        return out_set

    for example in [*release.train, *release.tests["1.6"]]:
        assert example.target in derivable(tuple(example.path)), example.id
    with open(out / "1.6_test.csv", newline="") as handle:
        assert csv.DictReader(handle).fieldnames == COLUMNS


def test_generated_datamodule_batches(tmp_path: Path) -> None:
    dm = ClutrrDataModule(generated_train_rows=80, generated_test_rows=6, generated_test_ks=[2, 7], batch_size=16)
    assert dm.source == "generated" and dm.data_facts()["num_relations"] == len(dm.relation_names)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.path.shape[0] == 16 and batch.path.dtype == torch.long
    assert torch.equal(batch.path_mask.sum(1), batch.path_length)
    assert batch.edges.shape[-1] == 3 and bool(
        (batch.edges[..., 2][batch.edge_mask] < dm.data_facts()["num_relations"]).all()
    )
    assert len(batch.meta["story"]) == 16 and batch.meta["task_k"] is None
    assert [next(iter(loader)).meta["task_k"] for loader in dm.test_dataloader()] == [2, 7]
    assert [next(iter(loader)).meta["task_name"] for loader in dm.test_dataloader()] == ["1.2", "1.7"]
    with pytest.raises(ValueError, match="vocabulary"):
        dm.load_state_dict({"relation_names": ["only", "two"]})


def write_release(folder: Path, train_text: str) -> Path:
    folder.mkdir()
    (folder / "1.2_train.csv").write_text(train_text)
    (folder / "1.2_test.csv").write_text(f"{HEADER}\n{GOOD_ROW}\n")
    return folder


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    with pytest.raises(ClutrrFormatError, match=r"bad\.csv: missing column\(s\) \['genders'\]"):
        parse_csv("id,story,query,target,story_edges,edge_types,query_edge\n1,s,q,t,[],[],(0, 1)\n", "bad.csv")


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (GOOD_ROW.replace('"[(0, 1), (1, 2)]"', '"[(0, 1), (1,"'), "story_edges"),
        (GOOD_ROW.replace("\"['father', 'father']\"", "\"['father', 'father', 'son']\""), "edge_types"),
        (GOOD_ROW.replace('"(0, 2)"', '"(0, two)"'), "query_edge"),
        (GOOD_ROW.replace("C:male", "C:unknown"), "genders"),
        (GOOD_ROW.replace('"(0, 2)"', '"(2, 0)"'), "query_edge"),
    ],
)
def test_malformed_rows_name_file_row_and_field(tmp_path: Path, row: str, field: str) -> None:
    folder = write_release(tmp_path / "rel", f"{HEADER}\n{GOOD_ROW}\n{row}\n")
    with pytest.raises(ClutrrFormatError) as info:
        read_release(folder)
    message = str(info.value)
    assert "1.2_train.csv" in message and "row 2" in message and field in message


def test_missing_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="LAART_LAB_DATA"):
        read_release(tmp_path / "nowhere.zip")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "1.2_test.csv").write_text(f"{HEADER}\n{GOOD_ROW}\n")
    with pytest.raises(ClutrrFormatError, match="_train.csv"):
        read_release(empty)
    good = write_release(tmp_path / "good", f"{HEADER}\n{GOOD_ROW}\n")
    assert read_release(good).train[0].path == ["father", "father"]


# ---- robustness releases: untyped (noise) edges, test files keyed by task name ----------------------
# 2 typed edges (B's father is A, A's father is C: the clean path) + 2 untyped noise edges (C-D, B-E)
NOISY_ROW = (
    '7,"[B] went fishing with his father [A]. [A] and his father [C] cooked. [C] called his daughter [D]. '
    '[B] played with his sister [E].","(\'B\', \'C\')",grandfather,"[(0, 1), (1, 2), (2, 3), (0, 4)]",'
    '"[\'father\', \'father\']","(0, 2)","B:male,A:male,C:male,D:female,E:female"'
)
ROW_K3 = (
    "3,\"[B] and his brother [A]. [A] and his father [C]. [C] and his father [D].\",\"('B', 'D')\",grandfather,"
    '"[(0, 1), (1, 2), (2, 3)]","[\'brother\', \'father\', \'father\']","(0, 3)","B:male,A:male,C:male,D:male"'
)
ROW_K3_NOISY = (
    '4,"[B] and his brother [A]. [A] and his father [C]. [C] and his father [D]. [D] and his wife [E].",'
    "\"('B', 'D')\",grandfather,\"[(0, 1), (1, 2), (2, 3), (3, 4)]\",\"['brother', 'father', 'father']\","
    '"(0, 3)","B:male,A:male,C:male,D:male,E:female"'
)


def test_untyped_noise_edges_are_kept_apart_from_the_typed_path() -> None:
    row = next(csv.DictReader([HEADER, NOISY_ROW]))
    example = parse_row(row, "noisy.csv, row 1")
    assert example.edges == [(0, 1, "father"), (1, 2, "father")]
    assert example.untyped_edges == [(2, 3), (0, 4)]
    assert example.k == 2 and example.path == ["father", "father"] and example.query == (0, 2)
    assert example.genders == [2, 2, 2, 1, 1] and example.names == ["B", "A", "C", "D", "E"]
    batch = ReasoningCollator({"father": 0, "grandfather": 1}, task_k=2, task_name="2.2")([example])
    assert batch.edges.tolist() == [[[0, 1, 0], [1, 2, 0]]] and batch.edge_mask.tolist() == [[True, True]]
    assert batch.node_genders.tolist() == [[2, 2, 2, 1, 1]] and batch.path_length.tolist() == [2]
    assert batch.meta["untyped_edges"] == [[(2, 3), (0, 4)]]
    assert batch.meta["task_k"] == 2 and batch.meta["task_name"] == "2.2"


def test_more_edge_types_than_edges_is_still_an_error() -> None:
    row = next(csv.DictReader([HEADER, NOISY_ROW.replace("\"['father', 'father']\"", "\"['father'] * 5\"")]))
    with pytest.raises(ClutrrFormatError, match="edge_types"):
        parse_row(row, "x.csv, row 1")
    three_types = GOOD_ROW.replace("\"['father', 'father']\"", "\"['father', 'father', 'son']\"")
    text = f"{HEADER}\n{three_types}\n"
    with pytest.raises(ClutrrFormatError, match=r"x\.csv, row 1, fields 'story_edges'/'edge_types': 2 edges but 3"):
        parse_csv(text, "x.csv")


def noisy_release(folder: Path) -> Path:
    folder.mkdir()
    (folder / "1.2,2.2_train.csv").write_text(f"{HEADER}\n{GOOD_ROW}\n{NOISY_ROW}\n")
    (folder / "1.2_test.csv").write_text(f"{HEADER}\n{GOOD_ROW}\n")
    (folder / "1.3_test.csv").write_text(f"{HEADER}\n{ROW_K3}\n")
    (folder / "2.3_test.csv").write_text(f"{HEADER}\n{ROW_K3_NOISY}\n")
    return folder


def test_test_files_are_keyed_by_task_name_and_same_k_files_both_load(tmp_path: Path) -> None:
    release = read_release(noisy_release(tmp_path / "rel"))
    assert list(release.tests) == ["1.2", "1.3", "2.3"]  # ordered by (k, task name); 1.3 and 2.3 both kept
    assert release.test_files == {"1.2": "1.2_test.csv", "1.3": "1.3_test.csv", "2.3": "2.3_test.csv"}
    assert release.test_k == {"1.2": 2, "1.3": 3, "2.3": 3}
    assert [e.id for e in release.tests_with_k(3)] == ["3", "4"]
    noisy = release.tests["2.3"][0]
    assert noisy.k == 3 and noisy.untyped_edges == [(3, 4)] and noisy.genders == [2, 2, 2, 2, 1]
    assert release.train[1].untyped_edges == [(2, 3), (0, 4)]

    dm = ClutrrDataModule(path=str(tmp_path / "rel"), batch_size=4)
    assert dm.relation_names == ["brother", "father", "grandfather"]  # no relation id for untyped edges
    dm.setup("test")
    assert dm.test_ks == [2, 3, 3] and dm.test_tasks == ["1.2", "1.3", "2.3"]
    batches = [next(iter(loader)) for loader in dm.test_dataloader()]
    assert [(b.meta["task_name"], b.meta["task_k"]) for b in batches] == [("1.2", 2), ("1.3", 3), ("2.3", 3)]
    assert batches[2].edges.shape == (1, 3, 3) and batches[2].meta["untyped_edges"] == [[(3, 4)]]


def test_same_k_test_files_count_together_and_are_also_logged_per_file(tmp_path: Path) -> None:
    from lightning.pytorch import Trainer

    from laart_lab.models.reasoning import RelationReasoning
    from laart_lab.reasoning.baselines import GRUReasoner

    dm = ClutrrDataModule(path=str(noisy_release(tmp_path / "rel")), batch_size=4)
    model = RelationReasoning(lambda n: GRUReasoner(n, dim=8), relation_names=dm.relation_names)
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(model, dm, verbose=False)
    tasks = model.last_test_task_table
    assert sorted(tasks) == ["1.2", "1.3", "2.3"] and sorted(model.last_test_table) == [2, 3]
    assert model.last_test_table[3] == pytest.approx((tasks["1.3"] + tasks["2.3"]) / 2)  # one row each
    logged = trainer.callback_metrics
    assert {"test/acc_k2", "test/acc_k3", "test/acc_mean", "test/acc_1.3", "test/acc_2.3"} <= set(logged)
    (tmp_path / "rel" / "2.3_test.csv").unlink()  # one file per k: per-file names are not logged
    dm = ClutrrDataModule(path=str(tmp_path / "rel"), batch_size=4)
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(model, dm, verbose=False)
    assert sorted(model.last_test_task_table) == ["1.2", "1.3"]
    assert {"test/acc_k3", "test/acc_mean"} <= set(trainer.callback_metrics)
    assert not any(key.startswith("test/acc_1.") for key in trainer.callback_metrics)


def test_a_zip_with_a_bad_crc_names_the_zip_and_the_member(tmp_path: Path) -> None:
    archive = tmp_path / "clutrr_bad.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as out:
        out.writestr("rel/1.2_train.csv", f"{HEADER}\n{GOOD_ROW}\n")
        out.writestr("rel/1.2_test.csv", f"{HEADER}\n{GOOD_ROW}\n")
    assert read_release(archive).train[0].target == "grandfather"
    data = bytearray(archive.read_bytes())
    data[data.find(b"grandfather")] ^= 0x20  # flip one byte of the first member's stored text: its CRC fails
    broken = tmp_path / "clutrr_broken.zip"
    broken.write_bytes(bytes(data))
    expected = r"clutrr_broken\.zip, member 'rel/1\.2_train\.csv': the zip is corrupt"
    with pytest.raises(ClutrrFormatError, match=expected):
        read_release(broken)


def test_benchmark_summary_without_long_test_files_prints_na() -> None:
    bench = load_benchmark("clutrr_per_k")
    results = [
        {"test": {2: 0.9, 3: 0.7}, "fit_seconds": 1.0, "epochs": 1},
        {"test": {2: 0.8, 3: 0.5}, "fit_seconds": 3.0, "epochs": 2},
    ]
    lines = bench.summarise(results).splitlines()
    assert lines[1:5] == [
        "     2  0.8500 ± 0.0500",
        "     3  0.6000 ± 0.1000",
        "  mean  0.7250 ± 0.0750",  # per seed: (0.9 + 0.7) / 2 = 0.8 and (0.8 + 0.5) / 2 = 0.65
        " k4-10  n/a",
    ]
