"""CLUTRR relational-reasoning data as :class:`~laart_lab.components.reasoner.ReasoningBatch` es.

Reads a CLUTRR release as distributed (Sinha et al., 2019): a zip, or a folder, holding
``<train tasks>_train.csv`` (e.g. ``1.2,1.3_train.csv``), ``1.<k>_test.csv`` files and ``config.json``.
With no path, it generates a CLUTRR-*like* kinship data set (:mod:`laart_lab.data.kinship`) in the same
format and reads it with the same code.

Per row it parses ``story_edges``/``edge_types`` (edge i: "node a's <relation> is node b"),
``query_edge`` (the two nodes whose relation is ``target``) and ``genders`` into a relation graph, plus
the relation *path* between the query nodes: the story edges in order when they form a walk from the
query head to its tail (CLUTRR's longer test stories contain back-and-forth detours; the walk keeps
them, so the path has k relations), else the shortest directed path. Story and query text go to
``batch.meta``. The relation vocabulary is the sorted set of relations in all files, so ids are stable
across train and test, and it travels with checkpoints (``state_dict`` and the model's hparams).

**Untyped (noise) edges.** CLUTRR's robustness releases (tasks ``2.k`` supporting, ``3.k`` irrelevant and
``4.k`` disconnected facts) list more ``story_edges`` than ``edge_types``: the first ``len(edge_types)``
edges are typed and form the clean path, the rest are the noise facts, whose relation the release does
not give. They are read as :attr:`ClutrrExample.untyped_edges` (``(a, b)`` pairs; the story states them,
so text models see them). ``ClutrrExample.edges``, the path and k (the number of *typed* edges) use the
typed edges only, and so does the graph view of a batch (``ReasoningBatch.edges``: the relation
vocabulary has no "unknown" id, so vocabularies and old checkpoints are unchanged); a batch carries the
untyped edges in ``meta["untyped_edges"]`` (one list of pairs per example). Fewer edges than edge types is
an error.

**Test files** are keyed by their whole task name (``1.3_test.csv`` -> ``"1.3"``, ``2.3_test.csv`` ->
``"2.3"``): :attr:`ClutrrRelease.tests` maps task name -> rows, :attr:`ClutrrRelease.test_files` task name
-> file name and :attr:`ClutrrRelease.test_k` task name -> k, all ordered by (k, task name). Each test
batch's meta holds its file's ``task_name`` and ``task_k``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import random
import re
import tempfile
import zipfile
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from torch.utils.data import DataLoader

from laart_lab.components.reasoner import ReasoningBatch
from laart_lab.data.base import SplitDataModule
from laart_lab.data.clutrr_text import (
    LaartBatch,
    TextCollator,
    WordTokenizer,
    encode_story,
    gold_entity_edges,
    tokenize,
)
from laart_lab.data.name_gender import CENSUS, NameGenderLexicon
from laart_lab.data.relation_swap import RelationSwap
from laart_lab.data.story_chains import chained_stories
from laart_lab.data.wording_split import EdgeWording, edge_wording, held_out_wording_split, sentence_templates
from laart_lab.paths import data_path

DEFAULT_CLUTRR = ("clutrr", "data_089907f8.zip")
REQUIRED_COLUMNS = ("story", "query", "target", "story_edges", "edge_types", "query_edge", "genders")
GENDER_IDS = {"female": 1, "male": 2}
_TEST_FILE = re.compile(r"^(\d+)\.(\d+)_test\.csv$")


class ClutrrFormatError(ValueError):
    """A CLUTRR file, column or row that cannot be read; the message names the file, row and field."""


@dataclass
class ClutrrExample:
    """One parsed CLUTRR row."""

    id: str
    story: str
    query_text: str
    target: str
    edges: list[tuple[int, int, str]]  #: typed edges (source, target, relation): "source's relation is target"
    query: tuple[int, int]
    genders: list[int]  #: per node: 0 unknown, 1 female, 2 male
    path: list[str]  #: relations from the query head to its tail
    k: int  #: number of typed story edges
    names: list[str] = field(default_factory=list)  #: per node: the name written in [brackets] in the story
    #: story edges with no edge type (CLUTRR's noise facts): (source node, target node), relation unknown
    untyped_edges: list[tuple[int, int]] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------
# parsing
# ------------------------------------------------------------------------------------------------
_PAIR_LIST = re.compile(r"\[\s*(?:\(\s*\d+\s*,\s*\d+\s*\)\s*,?\s*)*\]")
_PAIR = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)")
_NAME_LIST = re.compile(r"\[\s*(?:(['\"])[^'\"]+\1\s*,?\s*)*\]")
_NAME = re.compile(r"(['\"])([^'\"]+)\1")


def _pairs(text: str, where: str, field: str) -> list[tuple[int, int]]:
    """Parse ``[(0, 1), (1, 2)]`` (a fast regex for CLUTRR's exact format; ``ast`` is 10x slower)."""
    if not _PAIR_LIST.fullmatch(text.strip()):
        raise ClutrrFormatError(f"{where}, field '{field}': expected a list of (node, node) pairs, got {text!r}")
    return [(int(a), int(b)) for a, b in _PAIR.findall(text)]


def _pair(text: str, where: str, field: str) -> tuple[int, int]:
    match = _PAIR.fullmatch(text.strip())
    if match is None:
        raise ClutrrFormatError(f"{where}, field '{field}': expected a (node, node) pair, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _names(text: str, where: str, field: str) -> list[str]:
    if not _NAME_LIST.fullmatch(text.strip()):
        raise ClutrrFormatError(f"{where}, field '{field}': expected a list of relation names, got {text!r}")
    return [name.strip() for _, name in _NAME.findall(text)]


def relation_path(edges: Sequence[tuple[int, int, str]], head: int, tail: int) -> list[str] | None:
    """Relations from ``head`` to ``tail``: the edges in order if they form such a walk, else a shortest
    directed path (first edges first), or ``None`` when the query nodes are not connected that way."""
    if (
        edges
        and edges[0][0] == head
        and edges[-1][1] == tail
        and all(edges[i][1] == edges[i + 1][0] for i in range(len(edges) - 1))
    ):
        return [rel for _, _, rel in edges]
    previous: dict[int, tuple[int, str] | None] = {head: None}
    queue = deque([head])
    while queue:
        node = queue.popleft()
        for a, b, rel in edges:
            if a == node and b not in previous:
                previous[b] = (a, rel)
                queue.append(b)
    if tail not in previous or tail == head:
        return None
    path, node = [], tail
    while (step := previous[node]) is not None:
        node, rel = step
        path.append(rel)
    return path[::-1]


def parse_row(row: dict[str, str], where: str) -> ClutrrExample:
    """Parse one CSV row (``where`` names file and row in errors)."""
    for name in REQUIRED_COLUMNS:
        if row.get(name) is None:
            raise ClutrrFormatError(f"{where}: field '{name}' is missing")
    pairs = _pairs(row["story_edges"], where, "story_edges")
    types = _names(row["edge_types"], where, "edge_types")
    if len(types) > len(pairs):
        raise ClutrrFormatError(
            f"{where}, fields 'story_edges'/'edge_types': {len(pairs)} edges but {len(types)} edge types; "
            "each edge type needs its edge (extra edges, untyped, are allowed; extra types are not)"
        )
    if not pairs:
        raise ClutrrFormatError(f"{where}, field 'story_edges': the story has no edges")
    if not types:
        raise ClutrrFormatError(
            f"{where}, fields 'story_edges'/'edge_types': the story has no typed edges "
            f"({len(pairs)} edges, 0 edge types)"
        )
    query = _pair(row["query_edge"], where, "query_edge")
    target = row["target"].strip()
    if not target:
        raise ClutrrFormatError(f"{where}, field 'target': empty relation name")
    genders: list[int] = []
    names: list[str] = []
    for item in filter(None, (part.strip() for part in row["genders"].split(","))):
        name, sep, gender = item.rpartition(":")
        if not sep or gender.strip() not in GENDER_IDS:
            raise ClutrrFormatError(f"{where}, field 'genders': expected 'Name:male|female,...', got item {item!r}")
        genders.append(GENDER_IDS[gender.strip()])
        names.append(name.strip())
    num_nodes = max(max(max(p) for p in pairs), *query) + 1
    genders += [0] * (num_nodes - len(genders))
    edges = [(a, b, str(t)) for (a, b), t in zip(pairs, types)]
    untyped = pairs[len(types) :]
    path = relation_path(edges, *query)
    if path is None:
        through = f" through the {len(edges)} typed edges ({len(untyped)} untyped edges have no relation)"
        raise ClutrrFormatError(
            f"{where}, fields 'story_edges'/'query_edge': no directed path from node {query[0]} to {query[1]}"
            + (through if untyped else "")
        )
    return ClutrrExample(
        id=row.get("id") or where,
        story=row["story"],
        query_text=row["query"],
        target=target,
        edges=edges,
        query=query,
        genders=genders,
        path=path,
        k=len(edges),
        names=names,
        untyped_edges=untyped,
    )


def parse_csv(text: str, file_name: str) -> list[ClutrrExample]:
    """Parse a CLUTRR CSV file's text; errors name ``file_name``, the row (1 = first data row) and field."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ClutrrFormatError(f"{file_name}: missing column(s) {missing}; found {reader.fieldnames}")
    examples = [parse_row(row, f"{file_name}, row {index}") for index, row in enumerate(reader, 1)]
    if not examples:
        raise ClutrrFormatError(f"{file_name}: no data rows")
    return examples


@dataclass
class ClutrrRelease:
    """A parsed release: the training rows, one list of rows per test file, and ``config.json``.

    The test dicts are keyed by task name (``"1.3"`` for ``1.3_test.csv``, ``"2.3"`` for ``2.3_test.csv``)
    and ordered by (k, task name).
    """

    train_file: str
    train: list[ClutrrExample]
    tests: dict[str, list[ClutrrExample]]  #: task name -> rows of ``<task name>_test.csv``
    test_files: dict[str, str]  #: task name -> file name
    config: dict[str, Any]
    test_k: dict[str, int] = field(default_factory=dict)  #: task name -> k (the number after the dot)

    def tests_with_k(self, k: int) -> list[ClutrrExample]:
        """The rows of every test file whose task has this k (e.g. ``1.3`` and ``2.3`` for k=3)."""
        return [e for task, rows in self.tests.items() if self.test_k[task] == k for e in rows]


def _read_files(path: Path) -> dict[str, str]:
    """Name -> text of the CSV/JSON files at the top of a zip or folder (or its single sub-folder)."""
    if not path.exists():
        raise FileNotFoundError(
            f"CLUTRR data not found at {path}. Pass data.init_args.path (a CLUTRR zip or folder), set LAART_LAB_DATA "
            "to the folder holding clutrr/data_089907f8.zip, or use source: generated."
        )
    files: dict[str, str] = {}
    if path.is_dir():
        candidates = [p for p in path.iterdir() if p.suffix in (".csv", ".json")]
        if not candidates:
            subdirs = [p for p in path.iterdir() if p.is_dir()]
            candidates = [p for p in subdirs[0].iterdir() if p.suffix in (".csv", ".json")] if len(subdirs) == 1 else []
        for p in candidates:
            files[p.name] = p.read_text(encoding="utf-8")
    elif zipfile.is_zipfile(path):
        member = None
        try:
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    member = info.filename
                    name = info.filename.rsplit("/", 1)[-1]
                    if name.endswith((".csv", ".json")) and not info.filename.startswith("__MACOSX"):
                        files[name] = archive.read(info).decode("utf-8")
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            where = f", member {member!r}" if member is not None else ""
            raise ClutrrFormatError(f"{path}{where}: the zip is corrupt ({err}); download the release again") from None
        except UnicodeDecodeError as err:
            raise ClutrrFormatError(f"{path}, member {member!r}: not UTF-8 text ({err})") from None
    else:
        raise ClutrrFormatError(f"{path}: not a zip file or a folder")
    return files


_RELEASE_CACHE: dict[tuple, ClutrrRelease] = {}


def read_release(path: str | Path, train_file: str | None = None) -> ClutrrRelease:
    """Read a CLUTRR release (zip or folder) into parsed rows (cached per file and mtime in the process:
    the CLI builds the data module twice, once for its data facts)."""
    path = Path(path)
    key = (str(path.resolve()), path.stat().st_mtime if path.exists() else None, train_file)
    if key[1] is not None and path.is_file() and key in _RELEASE_CACHE:
        return _RELEASE_CACHE[key]
    release = _read_release(path, train_file)
    if path.is_file():
        _RELEASE_CACHE[key] = release
    return release


def _read_release(path: Path, train_file: str | None) -> ClutrrRelease:
    files = _read_files(path)
    train_names = sorted(n for n in files if n.endswith("_train.csv"))
    if train_file is not None:
        if train_file not in files:
            raise ClutrrFormatError(f"{path}: train_file {train_file!r} not found; available: {train_names}")
        train_names = [train_file]
    if len(train_names) != 1:
        raise ClutrrFormatError(
            f"{path}: expected exactly one '<tasks>_train.csv', found {train_names or 'none'}; "
            "choose one with train_file"
        )
    # task name -> (k, task prefix, file name); "2.3_test.csv" is task "2.3" with k = 3
    found = {
        f"{m.group(1)}.{m.group(2)}": (int(m.group(2)), int(m.group(1)), n) for n in files if (m := _TEST_FILE.match(n))
    }
    if not found:
        raise ClutrrFormatError(f"{path}: no '<task>.<k>_test.csv' files such as 1.2_test.csv (found {sorted(files)})")
    order = sorted(found, key=lambda task: found[task][:2])
    test_files = {task: found[task][2] for task in order}
    config: dict[str, Any] = {}
    if "config.json" in files:
        try:
            config = json.loads(files["config.json"])
        except json.JSONDecodeError as err:
            raise ClutrrFormatError(f"{path}/config.json: not valid JSON ({err})") from None
    return ClutrrRelease(
        train_file=train_names[0],
        train=parse_csv(files[train_names[0]], f"{path}/{train_names[0]}"),
        tests={task: parse_csv(files[n], f"{path}/{n}") for task, n in test_files.items()},
        test_files=test_files,
        config=config,
        test_k={task: found[task][0] for task in order},
    )


# ------------------------------------------------------------------------------------------------
# batching
# ------------------------------------------------------------------------------------------------
class ReasoningCollator:
    """Pads a list of examples into one :class:`ReasoningBatch` (relation names -> vocabulary ids)."""

    def __init__(self, relation_index: dict[str, int], task_k: int | None = None, task_name: str | None = None) -> None:
        self.relation_index, self.task_k, self.task_name = relation_index, task_k, task_name

    def __call__(self, examples: list[ClutrrExample]) -> ReasoningBatch:
        rel = self.relation_index
        b = len(examples)
        max_k = max(len(e.path) for e in examples)
        max_e = max(len(e.edges) for e in examples)
        max_n = max(len(e.genders) for e in examples)
        path = torch.zeros(b, max_k, dtype=torch.long)
        path_mask = torch.zeros(b, max_k, dtype=torch.bool)
        edges = torch.zeros(b, max_e, 3, dtype=torch.long)
        edge_mask = torch.zeros(b, max_e, dtype=torch.bool)
        genders = torch.zeros(b, max_n, dtype=torch.long)
        for i, e in enumerate(examples):
            path[i, : len(e.path)] = torch.tensor([rel[r] for r in e.path])
            path_mask[i, : len(e.path)] = True
            edges[i, : len(e.edges)] = torch.tensor([(s, t, rel[r]) for s, t, r in e.edges])
            edge_mask[i, : len(e.edges)] = True
            genders[i, : len(e.genders)] = torch.tensor(e.genders)
        return ReasoningBatch(
            path=path,
            path_mask=path_mask,
            edges=edges,
            edge_mask=edge_mask,
            query=torch.tensor([e.query for e in examples], dtype=torch.long),
            node_genders=genders,
            target=torch.tensor([rel[e.target] for e in examples], dtype=torch.long),
            path_length=torch.tensor([e.k for e in examples], dtype=torch.long),
            meta={
                "story": [e.story for e in examples],
                "query_text": [e.query_text for e in examples],
                "target_name": [e.target for e in examples],
                "id": [e.id for e in examples],
                "untyped_edges": [list(e.untyped_edges) for e in examples],
                "task_k": self.task_k,
                "task_name": self.task_name,
            },
        )


_GENERATED_CACHE: dict[tuple, ClutrrRelease] = {}


def generated_release(
    seed: int, train_ks: list[int], test_ks: list[int], train_rows: int, test_rows: int
) -> ClutrrRelease:
    """Generate a CLUTRR-like release (cached per arguments within the process) and read it back."""
    from laart_lab.data.kinship import generate_kinship

    key = (seed, tuple(train_ks), tuple(test_ks), train_rows, test_rows)
    if key not in _GENERATED_CACHE:
        with tempfile.TemporaryDirectory(prefix="laart_kinship_") as tmp:
            generate_kinship(
                tmp, seed=seed, train_ks=train_ks, test_ks=test_ks, train_rows=train_rows, test_rows=test_rows
            )
            _GENERATED_CACHE[key] = read_release(tmp)
    return _GENERATED_CACHE[key]


class _EvaluationFacts(NamedTuple):
    """By evaluation story id: what the evaluation metrics score against, kept outside the batches."""

    edges: dict[str, list[tuple[int, int, str]]]  #: gold chain edges (entity, entity, relation)
    wording: dict[str, list[EdgeWording]]  #: per gold edge, how the sentences that state it are worded
    genders: dict[str, list[int]]  #: per entity (reader's order), 0 unknown, 1 female, 2 male


class ClutrrDataModule(SplitDataModule):
    """CLUTRR (or the CLUTRR-like generator) as relational queries, with per-k test dataloaders.

    Args:
        path: a CLUTRR zip or folder. ``None`` with ``source='clutrr'`` reads
            ``$LAART_LAB_DATA/clutrr/data_089907f8.zip`` (``LAART_LAB_DATA`` defaults to ``../shared/data``).
        source: ``'clutrr'`` (read a release) or ``'generated'`` (the built-in CLUTRR-like generator);
            ``None`` means ``'clutrr'`` when a path is given, else ``'generated'``.
        train_file: which ``*_train.csv`` to use when the release holds several.
        batch_size: examples per batch (all loaders).
        val_fraction: share of the training file held out, seeded, for validation (model selection and
            early stopping use it; never the test files).
        val_split: how validation is held out. ``'random'``: stories at random. ``'held_out_wording'``:
            stories tied by a shared rare sentence stay on one side, so validation is worded in ways
            training never shows, as CLUTRR's test is (:mod:`laart_lab.data.wording_split`).
        wording_shared_limit: ``held_out_wording`` only: a sentence (names masked) used by at most this
            many training stories ties them to one side of the split.
        seed: seed of the validation split and of the generator.
        num_workers: DataLoader workers.
        generated_train_ks / generated_test_ks / generated_train_rows / generated_test_rows: generator sizes.
        view: ``'graph'`` batches are :class:`ReasoningBatch` es of the gold relation graph (for
            ``RelationReasoning``); ``'text'`` batches are :class:`~laart_lab.data.clutrr_text.LaartBatch` es
            of the story text (for ``LaartModel``), whose evaluation batches carry no gold graph.
        max_entities: text view: entity slots, the most people a story may mention.
        min_word_count: text view: words seen fewer times in the training stories read as ``<unk>``.
        mix_stories: text view, training only: share of stories interleaved with a second training story
            as distractor text (:class:`~laart_lab.data.clutrr_text.TextCollator`).
        mix_passages: with ``mix_stories``, interleave whole passages, not sentences, so that a fact stated across
            two sentences or a pronoun that refers back is not cut from what it needs
            (:func:`~laart_lab.data.clutrr_text.story_passages`). False: sentence by sentence.
        length_pool: training: sort each run of this many batches by story length before cutting it into
            batches (:func:`~laart_lab.data.resumable.length_pooled`), so batches pad little; text view: with
            ``mix_stories``, whole batches are then mixed (a share ``mix_stories`` of them). 0: off.
        relation_swap: text view, training only: share of stories whose one stated relation word is swapped
            for another (labels composed again), so the words around it stop predicting the relation
            (:mod:`laart_lab.data.relation_swap`). 0: off.
        relation_swap_crowded: with ``relation_swap``, also swap words in sentences that name a third person or hold
            a second kinship word, where the edge's word stands right before the person it names (same module).
        val_chained: add this many long stories to validation, each two or three validation stories joined
            at their query people (:mod:`laart_lab.data.story_chains`, k = 4..9), so that model selection
            and diagnostics see long chains as the test does, from the training file only. 0: off.
        name_genders: text view: where each person's first-name gender evidence comes from (``StoryBatch.name_gender``,
            :mod:`laart_lab.data.name_gender`): ``"census"`` (the US Census 1990 name lists), the path of a
            ``name,female,male`` CSV file, or None (no such evidence in the batches). The model decides whether to
            use it (``LaartModel(name_gender_weight=...)``).
        augment_generated: add this many generated kinship stories (:mod:`laart_lab.data.kinship`, of
            the ``generated_train_ks`` lengths, their own paraphrases) to the training split; validation
            and test stay the release's own.
    """

    def __init__(
        self,
        path: str | None = None,
        source: Literal["clutrr", "generated"] | None = None,
        train_file: str | None = None,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        seed: int = 0,
        num_workers: int = 0,
        val_split: Literal["random", "held_out_wording"] = "random",
        wording_shared_limit: int = 10,
        generated_train_ks: list[int] | None = None,
        generated_test_ks: list[int] | None = None,
        generated_train_rows: int = 5000,
        generated_test_rows: int = 100,
        view: Literal["graph", "text"] = "graph",
        max_entities: int = 32,
        min_word_count: int = 2,
        mix_stories: float = 0.0,
        mix_passages: bool = False,
        length_pool: int = 0,
        relation_swap: float = 0.0,
        relation_swap_crowded: bool = False,
        augment_generated: int = 0,
        val_chained: int = 0,
        name_genders: str | None = CENSUS,
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed, num_workers=num_workers)
        if view not in ("graph", "text"):
            raise ValueError(f"view must be 'graph' (relation graphs) or 'text' (story text), got {view!r}")
        self.view, self.max_entities, self.min_word_count = view, max_entities, min_word_count
        if not 0.0 <= mix_stories <= 1.0:
            raise ValueError(f"mix_stories is a share of training stories, in [0, 1]; got {mix_stories}")
        self.mix_stories = mix_stories
        if mix_passages and mix_stories == 0.0:
            raise ValueError("mix_passages says how mix_stories mixes stories, and mix_stories is 0 (off): set it too")
        self.mix_passages = mix_passages
        if length_pool < 0:
            raise ValueError(f"length_pool counts batches (0: off); got {length_pool}")
        self.length_pool = length_pool
        if relation_swap_crowded and relation_swap == 0.0:
            raise ValueError("relation_swap_crowded widens relation_swap, which is 0 (off): set relation_swap too")
        # RelationSwap checks the share
        self.relation_swap = RelationSwap(relation_swap, relation_swap_crowded) if relation_swap != 0.0 else None
        text_only = {"mix_stories": mix_stories, "relation_swap": relation_swap}
        if view == "graph" and (set_here := [name for name, value in text_only.items() if value]):
            raise ValueError(
                f"{' and '.join(set_here)} rewrite{'s' if len(set_here) == 1 else ''} story text, which view='graph' "
                "does not read: set view='text' or leave them at 0"
            )
        if augment_generated < 0:
            raise ValueError(f"augment_generated counts generated training stories (>= 0); got {augment_generated}")
        self.augment_generated = augment_generated
        if val_chained < 0:
            raise ValueError(f"val_chained counts long validation stories (0: off); got {val_chained}")
        self.val_chained = val_chained
        self.name_genders = NameGenderLexicon.load(name_genders) if name_genders and view == "text" else None
        self._tokenizer: WordTokenizer | None = None
        self._split_sets: tuple[list[ClutrrExample], list[ClutrrExample]] | None = None
        self._evaluation_index: _EvaluationFacts | None = None
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.source = source or ("clutrr" if path else "generated")
        if self.source not in ("clutrr", "generated"):
            raise ValueError(f"source must be 'clutrr' or 'generated', got {source!r}")
        self.path = path
        self.train_file = train_file
        self.val_fraction = val_fraction
        if val_split not in ("random", "held_out_wording"):
            raise ValueError(f"val_split must be 'random' or 'held_out_wording', got {val_split!r}")
        if wording_shared_limit < 1:
            raise ValueError(f"wording_shared_limit counts stories (>= 1); got {wording_shared_limit}")
        self.val_split, self.wording_shared_limit = val_split, wording_shared_limit
        self.generated_train_ks = list(generated_train_ks or [2, 3])
        self.generated_test_ks = list(generated_test_ks or range(2, 11))
        self.generated_train_rows, self.generated_test_rows = generated_train_rows, generated_test_rows
        self._release: ClutrrRelease | None = None
        self._relation_names: list[str] | None = None

    # ---- loading ---------------------------------------------------------------------------------
    @property
    def release(self) -> ClutrrRelease:
        if self._release is None:
            if self.source == "generated":
                self._release = generated_release(
                    self.seed,
                    self.generated_train_ks,
                    self.generated_test_ks,
                    self.generated_train_rows,
                    self.generated_test_rows,
                )
            else:
                self._release = read_release(self.path or data_path(*DEFAULT_CLUTRR), self.train_file)
        return self._release

    @property
    def relation_names(self) -> list[str]:
        if self._relation_names is None:
            rows = [
                *self.release.train,
                *(e for rows in self.release.tests.values() for e in rows),
                *self._generated_augmentation(),
            ]
            self._relation_names = sorted({r for e in rows for r in (e.target, *(t for _, _, t in e.edges))})
        return self._relation_names

    @property
    def test_ks(self) -> list[int]:
        """The k of each test dataloader, in order (two files of the same k, e.g. 1.3 and 2.3, give it twice)."""
        return [self.release.test_k[task] for task in self.release.tests]

    @property
    def test_tasks(self) -> list[str]:
        """The task name of each test dataloader, in order (``"1.3"`` for ``1.3_test.csv``)."""
        return list(self.release.tests)

    def data_facts(self) -> dict[str, Any]:
        """Facts the model needs: ``num_relations`` and ``relation_names`` (stored in its hparams); the
        text view adds ``vocabulary`` (the training stories' words) and ``max_entities``."""
        facts: dict[str, Any] = {"num_relations": len(self.relation_names), "relation_names": list(self.relation_names)}
        if self.view == "text":
            facts.update(vocabulary=list(self.tokenizer.words), max_entities=self.max_entities)
        return facts

    def _split(self) -> tuple[list[ClutrrExample], list[ClutrrExample]]:
        """(train, validation): a seeded split of the training file (by story, or by wording)."""
        if self._split_sets is None:
            train = list(self.release.train)
            if self.val_split == "held_out_wording":
                kept, held = held_out_wording_split(
                    [e.story for e in train], self.val_fraction, self.seed, self.wording_shared_limit
                )
            else:
                order = list(range(len(train)))
                random.Random(self.seed).shuffle(order)
                n_val = max(1, round(len(train) * self.val_fraction))
                kept, held = sorted(order[n_val:]), sorted(order[:n_val])
            validation = [train[i] for i in held]
            if self.val_chained:
                validation += chained_stories(
                    validation,
                    self.val_chained,
                    self.seed,
                    max_entities=self.max_entities if self.view == "text" else None,
                )
            self._split_sets = ([train[i] for i in kept] + self._generated_augmentation(), validation)
        return self._split_sets

    def _generated_augmentation(self) -> list[ClutrrExample]:
        if not self.augment_generated:
            return []
        extra = generated_release(self.seed + 1, self.generated_train_ks, [2], self.augment_generated, 1)
        return [dataclasses.replace(e, id=f"generated-{e.id}") for e in extra.train]

    @property
    def tokenizer(self) -> WordTokenizer:
        """Text view: the word vocabulary of the training split's stories (or the checkpoint's)."""
        if self._tokenizer is None:
            self._tokenizer = WordTokenizer.build((e.story for e in self._split()[0]), self.min_word_count)
        return self._tokenizer

    def setup(self, stage: str | None = None) -> None:
        self.train_set, self.val_set = self._split()
        self._index = {name: i for i, name in enumerate(self.relation_names)}

    def gold_edges(self, ids: list[str]) -> list[list[tuple[int, int, str]]]:
        """Text view: the gold chain edges ``(entity, entity, relation)`` of evaluation stories, by id.

        Kept here, outside the batches, so that a model reads no gold graph at evaluation; only the
        edge metrics ask for it.
        """
        edges = self._evaluation_facts().edges
        return [edges.get(i, []) for i in ids]

    def gold_edge_wording(self, ids: list[str]) -> list[list[EdgeWording]]:
        """Text view, beside :meth:`gold_edges`: per gold edge, whether the sentences that state it are
        worded as some training sentence is (``"seen"``), unlike all of them (``"unseen"``, as in CLUTRR's
        test), or no sentence names both people (``"apart"``) (:func:`~laart_lab.data.wording_split.edge_wording`)."""
        wording = self._evaluation_facts().wording
        return [wording.get(i, []) for i in ids]

    def gold_genders(self, ids: list[str]) -> list[list[int]]:
        """Text view, beside :meth:`gold_edges`: per entity of each evaluation story (in the reader's entity
        order), its gold gender (0 unknown, 1 female, 2 male), for the gender-reading metric only."""
        genders = self._evaluation_facts().genders
        return [genders.get(i, []) for i in ids]

    def _evaluation_facts(self) -> _EvaluationFacts:
        """By evaluation story id: its gold chain edges, their wording, and its entities' genders (built once,
        on first use)."""
        if self._evaluation_index is None:
            training = {t for e in self._split()[0] for t in sentence_templates(e.story)}
            edges_of: dict[str, list[tuple[int, int, str]]] = {}
            wording_of: dict[str, list[EdgeWording]] = {}
            genders_of: dict[str, list[int]] = {}
            for e in [*self._split()[1], *(e for rows in self.release.tests.values() for e in rows)]:
                encoded = encode_story(e, self.tokenizer)
                edges_of[e.id] = gold_entity_edges(e, encoded)
                wording_of[e.id] = edge_wording(e.story, encoded.entity_names, edges_of[e.id], training)
                genders_of[e.id] = [0 if node is None else e.genders[node] for node in encoded.node_of_entity]
            self._evaluation_index = _EvaluationFacts(edges_of, wording_of, genders_of)
        return self._evaluation_index

    # ---- loaders ---------------------------------------------------------------------------------
    def _loader(
        self, rows: list[ClutrrExample], shuffle: bool, task_k: int | None = None, task_name: str | None = None
    ) -> DataLoader:
        collate: Any
        if self.view == "text":  # only the shuffled (training) loader carries gold facts
            collate = TextCollator(
                self.tokenizer, self._index, self.max_entities, training=shuffle, task_k=task_k,
                task_name=task_name, mix_stories=self.mix_stories if shuffle else 0.0,
                mix_per_batch=self.length_pool > 1, augment=self.relation_swap if shuffle else None,
                name_genders=self.name_genders, mix_passages=self.mix_passages,
            )  # fmt: skip
        else:
            collate = ReasoningCollator(self._index, task_k, task_name)
        pooled = shuffle and self.length_pool > 1
        lengths = [len(tokenize(e.story)) if self.view == "text" else len(e.edges) for e in rows] if pooled else None
        # training (shuffle): shuffled by (seed, epoch), and an interrupted run resumes mid-epoch in order
        return self.loader(
            rows,  # type: ignore[arg-type]  # a list is a dataset
            train=shuffle,
            collate_fn=collate,
            lengths=lengths,
            length_pool=self.length_pool,
        )

    def split_loader(self, split: str) -> DataLoader | list[DataLoader]:
        """Training and validation rows of the training file; one test loader per test file (its k and name)."""
        if split == "train":
            return self._loader(self.train_set, shuffle=True)
        if split == "val":
            return self._loader(self.val_set, shuffle=False)
        release = self.release
        return [
            self._loader(rows, shuffle=False, task_k=release.test_k[task], task_name=task)
            for task, rows in release.tests.items()
        ]

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return (
            batch.to(device)
            if isinstance(batch, (ReasoningBatch, LaartBatch))
            else super().transfer_batch_to_device(batch, device, dataloader_idx)
        )

    # ---- checkpoint --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"relation_names": list(self.relation_names)}
        if self.view == "text":
            state["vocabulary"] = list(self.tokenizer.words)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        vocabulary = state_dict.get("vocabulary")
        if vocabulary is not None and self.view == "text":  # read new stories with the words the model learnt
            self._tokenizer = WordTokenizer(vocabulary)
            self._evaluation_index = None
        saved = state_dict.get("relation_names")
        if saved is not None and list(saved) != self.relation_names:
            raise ValueError(
                f"the checkpoint's relation vocabulary {saved} differs from this data's {self.relation_names}; "
                "relation ids would not match. Use the data the model was trained on."
            )
