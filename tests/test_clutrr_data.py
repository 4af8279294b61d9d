"""CLUTRR reading (real release when present), the kinship generator, and the promised errors."""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path

import pytest
import torch

from laart_lab.data.clutrr import ClutrrDataModule, ClutrrFormatError, parse_csv, read_release, relation_path
from laart_lab.data.kinship import COLUMNS, generate_kinship
from laart_lab.paths import data_path

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
    assert sorted(release.tests) == list(range(2, 11))  # README: test on k=2..10
    sizes = [len(rows) for rows in release.tests.values()]
    assert min(sizes) == 38 and max(sizes) == 190  # README: 38-190 rows each
    first = release.train[0]
    assert first.path == ["father", "sister"] and first.target == "aunt" and first.query == (0, 2)
    assert first.genders == [2, 2, 1]
    assert all(len(e.path) == k for k, rows in release.tests.items() for e in rows)  # the walk keeps k relations


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
    assert len(release.train) == 60 and {k: len(v) for k, v in release.tests.items()} == {2: 8, 4: 8, 6: 8}

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

    for example in [*release.train, *release.tests[6]]:
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
        (GOOD_ROW.replace("\"['father', 'father']\"", "\"['father']\""), "edge_types"),
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
