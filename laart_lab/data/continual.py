"""Data whose training stream changes in stages, with an optional small replay buffer.

A *staged* data module trains on stage 0 for ``stage_epochs[0]`` epochs, then on stage 1 for
``stage_epochs[1]`` epochs, and so on; ``trainer.max_epochs`` is ``sum(stage_epochs)`` and the trainer must
rebuild its loaders every epoch (``reload_dataloaders_every_n_epochs: 1``; the module says so if not).
Each stage trains one *evaluation task*; stages may return to an earlier task (``stage_tasks``). Every
task keeps its own validation and test sets, which :class:`laart_lab.callbacks.continual.ContinualMatrix`
evaluates after every stage (the continual-learning matrix).

Replay (``replay > 0``): a buffer keeps ``replay_buffer`` training items of every finished stage (a seeded
sample, fixed once chosen); in later stages a share ``replay`` of the training items comes from that
buffer (drawn with replacement, seeded by epoch). ``replay: 0`` is plain fine-tuning on the new stage.

Two modules:

* :class:`ContinualTextDataModule` (``continual_text``): byte-level language modelling over a sequence of
  corpora, e.g. Tiny Shakespeare -> Python source -> Tiny Shakespeare. ``"python_stdlib"`` is the
  concatenation of :data:`PYTHON_STDLIB_MODULES`' source files from the running interpreter's standard
  library (no download; the files and their sizes are in :meth:`ContinualTextDataModule.describe`).
  Batches are in stream order (row ``r`` of consecutive batches continues the same text, as memory
  modules need; ``stream_start`` marks a row that starts a new stream), replayed rows are single windows.
* :class:`ContinualKinshipDataModule` (``continual_kinship``): CLUTRR-like kinship queries
  (:mod:`laart_lab.data.kinship`) whose relations arrive in stages: a story belongs to the first stage
  whose cumulative relation set holds all its relations (path and answer), so stage ``i > 0`` stories
  mix old relations with at least one new one, in training and in test.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from laart_lab.paths import data_path

__all__ = [
    "PYTHON_STDLIB_MODULES",
    "ContinualKinshipDataModule",
    "ContinualTextDataModule",
    "StagedDataModule",
    "python_stdlib_files",
]

#: standard-library modules whose source files make the ``python_stdlib`` corpus (sorted, concatenated)
PYTHON_STDLIB_MODULES: tuple[str, ...] = (
    "argparse", "ast", "calendar", "collections", "configparser", "csv", "dataclasses", "difflib", "enum",
    "fractions", "functools", "inspect", "ipaddress", "logging", "pathlib", "pickle", "pprint", "random",
    "shutil", "statistics", "subprocess", "tarfile", "textwrap", "threading", "typing", "zipfile",
)  # fmt: skip

#: CLUTRR's relations grouped as the kinship stream's stages: blood relations, then in-laws, then spouses
KINSHIP_STAGES: tuple[tuple[str, ...], ...] = (
    (
        "father", "mother", "son", "daughter", "brother", "sister", "grandfather", "grandmother",
        "grandson", "granddaughter", "uncle", "aunt", "nephew", "niece",
    ),
    ("father-in-law", "mother-in-law", "son-in-law", "daughter-in-law"),
    ("husband", "wife"),
)  # fmt: skip
KINSHIP_STAGE_NAMES = ("blood", "in-laws", "spouses")


class StagedDataModule(LightningDataModule):
    """The stage schedule and the replay buffer; subclasses say what a stage's items are.

    Args:
        stage_epochs: epochs each stage lasts (its length is the number of stages).
        replay: share of each later stage's training items drawn from the replay buffer, in [0, 1).
        replay_buffer: items kept per finished stage (only used when ``replay > 0``).
        batch_size: items per training batch.
        seed: seed of the data order, the buffer's sample and the replay draws.
    """

    def __init__(
        self, stage_epochs: Sequence[int], replay: float = 0.0, replay_buffer: int = 256, batch_size: int = 32,
        seed: int = 0,
    ) -> None:  # fmt: skip
        super().__init__()
        stage_epochs = [int(e) for e in stage_epochs]
        if not stage_epochs or min(stage_epochs) < 1:
            raise ValueError(f"stage_epochs must list at least one stage of >= 1 epoch, got {stage_epochs}")
        if not 0.0 <= replay < 1.0:
            raise ValueError(f"replay is the share of training items replayed from the buffer, in [0, 1); got {replay}")
        if replay > 0 and replay_buffer < 1:
            raise ValueError(f"replay > 0 needs replay_buffer >= 1 items per stage, got {replay_buffer}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.stage_epochs, self.replay, self.replay_buffer = stage_epochs, replay, replay_buffer
        self.batch_size, self.seed = batch_size, seed

    # ---- schedule --------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return len(self.stage_epochs)

    @property
    def total_epochs(self) -> int:
        return sum(self.stage_epochs)

    def stage_of_epoch(self, epoch: int) -> int:
        """The stage that trains in ``epoch`` (0-based)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        end = 0
        for stage, epochs in enumerate(self.stage_epochs):
            end += epochs
            if epoch < end:
                return stage
        raise ValueError(
            f"epoch {epoch} is past the last stage: stage_epochs {self.stage_epochs} sum to {self.total_epochs}; "
            f"set trainer.max_epochs to {self.total_epochs}"
        )

    def is_stage_end(self, epoch: int) -> bool:
        """Whether ``epoch`` is the last epoch of its stage."""
        return epoch + 1 in np.cumsum(self.stage_epochs).tolist()

    def is_stage_start(self, epoch: int) -> bool:
        return epoch == 0 or self.is_stage_end(epoch - 1)

    @property
    def current_epoch(self) -> int:
        trainer = self.trainer
        return int(trainer.current_epoch) if trainer is not None else 0

    @property
    def current_stage(self) -> int:
        """The stage of the trainer's epoch (the last stage once training is over: evaluation after fit)."""
        return self.stage_of_epoch(min(self.current_epoch, self.total_epochs - 1))

    def training_stage(self) -> int:
        """The stage to train now; a clear error when the trainer runs more epochs than the stages have."""
        self._check_reload()
        return self.stage_of_epoch(self.current_epoch)

    def _check_reload(self) -> None:
        trainer = self.trainer
        # Lightning keeps the option on the trainer (set by its data connector), not as a typed attribute
        every = getattr(trainer, "reload_dataloaders_every_n_epochs", None) if trainer is not None else None
        if trainer is not None and self.num_stages > 1 and every != 1:
            raise ValueError(
                f"{type(self).__name__} changes its training data between stages: set "
                "trainer.reload_dataloaders_every_n_epochs: 1 (the shipped continual_* recipes do)"
            )

    # ---- what subclasses provide ---------------------------------------------------------------
    @property
    def task_names(self) -> list[str]:
        """One name per evaluation task."""
        raise NotImplementedError

    @property
    def stage_tasks(self) -> list[int]:
        """The evaluation task each stage trains (default: stage ``i`` is task ``i``)."""
        return list(range(self.num_stages))

    def stage_items(self, stage: int, epoch: int) -> list[Any]:
        """The training items of one epoch of ``stage``, in training order."""
        raise NotImplementedError

    def buffer_candidates(self, stage: int) -> list[Any]:
        """Training items of ``stage`` the replay buffer samples from."""
        raise NotImplementedError

    def eval_loader(self, task: int, split: str) -> DataLoader:
        """The ``"val"`` or ``"test"`` loader of one evaluation task."""
        raise NotImplementedError

    # ---- replay -------------------------------------------------------------------------------
    def replay_items(self, stage: int) -> list[Any]:
        """The buffer in ``stage``: ``replay_buffer`` items of every earlier stage (a fixed seeded sample)."""
        items: list[Any] = []
        for earlier in range(stage):
            candidates = self.buffer_candidates(earlier)
            rng = random.Random(f"replay-buffer-{self.seed}-{earlier}")
            items += rng.sample(candidates, min(self.replay_buffer, len(candidates)))
        return items

    def replay_draw(self, stage: int, epoch: int, n: int) -> list[Any]:
        """``n`` items drawn with replacement from the buffer (none in stage 0 or without replay)."""
        if self.replay <= 0 or stage == 0 or n <= 0:
            return []
        buffer = self.replay_items(stage)
        rng = random.Random(f"replay-draw-{self.seed}-{epoch}")
        return [buffer[rng.randrange(len(buffer))] for _ in range(n)]


# ------------------------------------------------------------------------------------------------
# language modelling: corpora in stages
# ------------------------------------------------------------------------------------------------
def python_stdlib_files(modules: Sequence[str] = PYTHON_STDLIB_MODULES) -> list[Path]:
    """The source file of each standard-library module (a package's ``__init__.py``), from this interpreter."""
    files = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            raise FileNotFoundError(f"python_stdlib: no Python source for the standard-library module {name!r}")
        files.append(Path(spec.origin))
    return files


def _read_corpus(source: str) -> tuple[bytes, dict[str, Any]]:
    """The bytes of a corpus and what it is: ``tinyshakespeare``, ``python_stdlib`` or a file path."""
    if source == "python_stdlib":
        files = python_stdlib_files()
        parts = [f"# ---- {path.name} ----\n".encode() + path.read_bytes() for path in files]
        info = {
            "python": sys.version.split()[0],
            "files": [{"path": str(p), "bytes": p.stat().st_size} for p in files],
        }
        return b"\n".join(parts), info
    path = data_path("tinyshakespeare", "input.txt") if source == "tinyshakespeare" else Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"continual_text: corpus {source!r} -> {path} does not exist; give a text file path, 'python_stdlib', "
            "or 'tinyshakespeare' (read from $LAART_LAB_DATA/tinyshakespeare/input.txt)"
        )
    return path.read_bytes(), {"path": str(path)}


class ContinualTextDataModule(StagedDataModule):
    """Byte-level LM windows over corpora in stages (see the module docstring).

    Args:
        stages: one corpus per stage: ``"tinyshakespeare"``, ``"python_stdlib"`` or a text file path. A
            corpus named again is the same evaluation task (Shakespeare -> Python -> Shakespeare: 2 tasks).
        stage_epochs: epochs per stage; an epoch is ``steps_per_epoch`` batches.
        block_size: tokens per window.
        steps_per_epoch: training batches per epoch.
        eval_tokens: tokens of each task's validation / test split that the matrix evaluates (the start
            of the split, cut into ``eval_batch_size`` streams).
        split: shares of each corpus for (train, validation, test), contiguous and in that order.
        replay, replay_buffer, batch_size, seed: see :class:`StagedDataModule` (the buffer holds windows).
    """

    def __init__(
        self,
        stages: Sequence[str] = ("tinyshakespeare", "python_stdlib", "tinyshakespeare"),
        stage_epochs: Sequence[int] = (1, 1, 1),
        block_size: int = 64,
        batch_size: int = 32,
        eval_batch_size: int = 32,
        steps_per_epoch: int = 200,
        eval_tokens: int = 32768,
        split: Sequence[float] = (0.8, 0.1, 0.1),
        replay: float = 0.0,
        replay_buffer: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__(stage_epochs, replay, replay_buffer, batch_size, seed)
        if len(stages) != len(self.stage_epochs):
            raise ValueError(f"continual_text: {len(stages)} stages but {len(self.stage_epochs)} stage_epochs")
        if block_size < 1 or steps_per_epoch < 1 or eval_batch_size < 1:
            raise ValueError("continual_text: block_size, steps_per_epoch and eval_batch_size must be >= 1")
        if len(split) != 3 or min(split) <= 0 or abs(sum(split) - 1.0) > 1e-6:
            raise ValueError(
                f"continual_text: split is three positive shares (train, val, test) summing to 1, got {split}"
            )
        self.stages = list(stages)
        self.block_size, self.eval_batch_size = block_size, eval_batch_size
        self.steps_per_epoch, self.eval_tokens, self.split = steps_per_epoch, eval_tokens, tuple(split)
        self.corpora: list[str] = list(dict.fromkeys(self.stages))  # evaluation tasks, in first-seen order
        self._tokens: dict[str, dict[str, np.ndarray]] = {}
        self._info: dict[str, Any] = {}

    # ---- data facts (byte level: any corpus, one vocabulary for every stage) -------------------
    def data_facts(self) -> dict[str, Any]:
        return {"vocab_size": 256, "vocabulary": None, "block_size": self.block_size}

    @property
    def vocabulary(self) -> None:
        return None  # byte level (what CharLM checks against its own vocabulary)

    @property
    def task_names(self) -> list[str]:
        return list(self.corpora)

    @property
    def stage_tasks(self) -> list[int]:
        return [self.corpora.index(s) for s in self.stages]

    def describe(self) -> dict[str, Any]:
        """Each corpus: where it comes from (files and sizes), its size and split sizes in tokens."""
        self._load()
        return {
            name: {**self._info[name], "split_tokens": {k: len(v) for k, v in self._tokens[name].items()}}
            for name in self.corpora
        }

    def _load(self) -> None:
        for name in self.corpora:
            if name in self._tokens:
                continue
            raw, info = _read_corpus(name)
            ids = np.frombuffer(raw, dtype=np.uint8)
            n_train = int(len(ids) * self.split[0])
            n_val = int(len(ids) * self.split[1])
            parts = {"train": ids[:n_train], "val": ids[n_train : n_train + n_val], "test": ids[n_train + n_val :]}
            need = self.block_size + 1
            for part, tokens in parts.items():
                if len(tokens) < max(need, self.batch_size * need if part == "train" else need):
                    raise ValueError(
                        f"continual_text: the {part} split of {name!r} has {len(tokens)} bytes, too few for "
                        f"windows of block_size + 1 = {need}; use a longer corpus or a smaller block_size"
                    )
            self._tokens[name] = parts
            self._info[name] = {**info, "bytes": len(ids)}

    def setup(self, stage: str | None = None) -> None:
        self._load()

    # ---- training items: windows as (corpus, offset) pairs ----------------------------------------
    def _train_tokens(self, stage: int) -> np.ndarray:
        self._load()
        return self._tokens[self.stages[stage]]["train"]

    def stage_items(self, stage: int, epoch: int) -> list[Any]:
        """Windows ``(stage, offset)`` in stream order: batch ``i`` row ``r`` is window ``i`` of stream ``r``."""
        tokens = self._train_tokens(stage)
        span = self.steps_per_epoch * self.block_size + 1
        rng = np.random.default_rng([self.seed, epoch, 17])
        starts = rng.integers(0, max(1, len(tokens) - span), size=self.batch_size)
        return [(stage, int(s) + i * self.block_size) for i in range(self.steps_per_epoch) for s in starts]

    def buffer_candidates(self, stage: int) -> list[Any]:
        tokens = self._train_tokens(stage)
        return [(stage, o) for o in range(0, len(tokens) - self.block_size - 1, self.block_size)]

    def _window(self, item: tuple[int, int]) -> np.ndarray:
        stage, offset = item
        tokens = self._train_tokens(stage)
        offset = min(offset, len(tokens) - self.block_size - 1)
        return np.asarray(tokens[offset : offset + self.block_size + 1], dtype=np.int64)

    def train_dataloader(self) -> DataLoader:
        """This epoch's batches: ``batch_size - n_replay`` streams of the stage and ``n_replay`` buffer windows."""
        epoch, stage = self.current_epoch, self.training_stage()
        n_replay = round(self.batch_size * self.replay) if stage > 0 else 0
        n_stream = self.batch_size - n_replay
        items = self.stage_items(stage, epoch)
        replayed = self.replay_draw(stage, epoch, n_replay * self.steps_per_epoch)
        batches = []
        for i in range(self.steps_per_epoch):
            rows = items[i * self.batch_size : i * self.batch_size + n_stream]
            extra = replayed[i * n_replay : (i + 1) * n_replay]
            windows = torch.from_numpy(np.stack([self._window(w) for w in rows + extra]))
            start = torch.zeros(len(rows) + len(extra), dtype=torch.bool)
            start[len(rows) :] = True  # replayed windows are streams of their own
            if i == 0:
                start[:] = True
            batches.append({"input": windows[:, :-1], "target": windows[:, 1:], "stream_start": start})
        return DataLoader(batches, batch_size=None, shuffle=False)  # type: ignore[arg-type]  # a list of batches

    # ---- evaluation ----------------------------------------------------------------------------
    def eval_loader(self, task: int, split: str) -> DataLoader:
        """Stream-ordered windows over the first ``eval_tokens`` tokens of a task's split."""
        self._load()
        tokens = self._tokens[self.corpora[task]][split]
        rows = self.eval_batch_size
        per_row = min(self.eval_tokens, len(tokens) - 1) // rows // self.block_size
        if per_row < 1:
            raise ValueError(
                f"continual_text: the {split} split of {self.corpora[task]!r} is too short for {rows} streams; "
                "lower eval_batch_size or block_size"
            )
        stream = per_row * self.block_size
        ids = torch.from_numpy(np.asarray(tokens[: rows * stream + 1], dtype=np.int64))
        batches = []
        for i in range(per_row):
            idx = torch.arange(rows)[:, None] * stream + i * self.block_size + torch.arange(self.block_size + 1)
            window = ids[idx.clamp_max(len(ids) - 1)]
            batches.append(
                {"input": window[:, :-1], "target": window[:, 1:], "stream_start": torch.full((rows,), i == 0)}
            )
        return DataLoader(batches, batch_size=None, shuffle=False)  # type: ignore[arg-type]

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self.stage_tasks[self.current_stage], "val")

    def test_dataloader(self) -> DataLoader:
        return self.eval_loader(self.stage_tasks[self.current_stage], "test")


# ------------------------------------------------------------------------------------------------
# relational reasoning: relations in stages
# ------------------------------------------------------------------------------------------------
class ContinualKinshipDataModule(StagedDataModule):
    """Generated CLUTRR-like kinship queries whose relations arrive in stages (graph view, for the SLRM).

    Args:
        relation_stages: the relations each stage adds (default: blood relations, in-laws, spouses).
        stage_epochs: epochs per stage.
        train_ks / test_ks: path lengths of the generated training / test stories.
        generated_train_rows / generated_test_rows: generator sizes (test rows per k); the stories are
            then split by stage.
        max_train_per_stage / max_test_per_stage: cap per stage (equal-sized stages).
        val_fraction: share of each stage's training stories held out for validation.
        replay, replay_buffer, batch_size, seed: see :class:`StagedDataModule`; ``seed`` also seeds the
            generator.
    """

    def __init__(
        self,
        relation_stages: Sequence[Sequence[str]] = KINSHIP_STAGES,
        stage_epochs: Sequence[int] = (6, 6, 6),
        train_ks: Sequence[int] = (2, 3),
        test_ks: Sequence[int] = (2, 3),
        generated_train_rows: int = 12000,
        generated_test_rows: int = 1200,
        max_train_per_stage: int = 1500,
        max_test_per_stage: int = 300,
        val_fraction: float = 0.15,
        replay: float = 0.0,
        replay_buffer: int = 100,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__(stage_epochs, replay, replay_buffer, batch_size, seed)
        if len(relation_stages) != len(self.stage_epochs):
            raise ValueError(
                f"continual_kinship: {len(relation_stages)} relation stages but {len(self.stage_epochs)} stage_epochs"
            )
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.relation_stages = [list(s) for s in relation_stages]
        self.train_ks, self.test_ks = list(train_ks), list(test_ks)
        self.generated_train_rows, self.generated_test_rows = generated_train_rows, generated_test_rows
        self.max_train_per_stage, self.max_test_per_stage = max_train_per_stage, max_test_per_stage
        self.val_fraction = val_fraction
        self._sets: dict[str, list[list[Any]]] | None = None

    def _build(self) -> dict[str, list[list[Any]]]:
        if self._sets is not None:
            return self._sets
        from laart_lab.data.clutrr import generated_release

        release = generated_release(
            self.seed, self.train_ks, self.test_ks, self.generated_train_rows, self.generated_test_rows
        )
        cumulative: list[set[str]] = []
        for relations in self.relation_stages:
            cumulative.append((cumulative[-1] if cumulative else set()) | set(relations))

        def stage_of(example: Any) -> int | None:
            used = {example.target, *(r for _, _, r in example.edges)}
            return next((i for i, allowed in enumerate(cumulative) if used <= allowed), None)

        def by_stage(rows: list[Any], cap: int) -> list[list[Any]]:
            groups: list[list[Any]] = [[] for _ in cumulative]
            for example in rows:
                stage = stage_of(example)
                if stage is not None and len(groups[stage]) < cap:
                    groups[stage].append(example)
            return groups

        n_val = [max(1, round(self.max_train_per_stage * self.val_fraction))] * self.num_stages
        train_groups = by_stage(list(release.train), self.max_train_per_stage + n_val[0])
        tests = by_stage([e for rows in release.tests.values() for e in rows], self.max_test_per_stage)
        for i, (group, test) in enumerate(zip(train_groups, tests)):
            if len(group) < 2 * n_val[i] or not test:
                raise ValueError(
                    f"continual_kinship: stage {i} ({self.relation_stages[i]}) has only {len(group)} training and "
                    f"{len(test)} test stories; raise generated_train_rows / generated_test_rows"
                )
        self._sets = {
            "train": [g[n : len(g)] for g, n in zip(train_groups, n_val)],
            "val": [g[:n] for g, n in zip(train_groups, n_val)],
            "test": tests,
        }
        return self._sets

    @property
    def relation_names(self) -> list[str]:
        """Every stage's relations, sorted: the model's output vocabulary is fixed from the start."""
        return sorted({r for stage in self.relation_stages for r in stage})

    def data_facts(self) -> dict[str, Any]:
        return {"num_relations": len(self.relation_names), "relation_names": self.relation_names}

    @property
    def task_names(self) -> list[str]:
        if self.relation_stages == [list(s) for s in KINSHIP_STAGES]:
            return list(KINSHIP_STAGE_NAMES)
        return [f"stage{i}" for i in range(self.num_stages)]

    def describe(self) -> dict[str, Any]:
        sets = self._build()
        return {
            name: {split: len(sets[split][i]) for split in ("train", "val", "test")} | {"adds": self.relation_stages[i]}
            for i, name in enumerate(self.task_names)
        }

    def setup(self, stage: str | None = None) -> None:
        self._build()
        self._index = {name: i for i, name in enumerate(self.relation_names)}

    def _collate(self) -> Any:
        from laart_lab.data.clutrr import ReasoningCollator

        return ReasoningCollator({name: i for i, name in enumerate(self.relation_names)})

    def stage_items(self, stage: int, epoch: int) -> list[Any]:
        return list(self._build()["train"][stage])

    def buffer_candidates(self, stage: int) -> list[Any]:
        return list(self._build()["train"][stage])

    def train_dataloader(self) -> DataLoader:
        epoch, stage = self.current_epoch, self.training_stage()
        items = self.stage_items(stage, epoch)
        n_replay = round(len(items) * self.replay / (1.0 - self.replay)) if stage > 0 else 0
        items = items + self.replay_draw(stage, epoch, n_replay)
        random.Random(f"kinship-order-{self.seed}-{epoch}").shuffle(items)
        return DataLoader(items, batch_size=self.batch_size, shuffle=False, collate_fn=self._collate())  # type: ignore[arg-type]

    def _stories_loader(self, rows: list[Any]) -> DataLoader:
        return DataLoader(rows, batch_size=256, shuffle=False, collate_fn=self._collate())  # type: ignore[arg-type]

    def eval_loader(self, task: int, split: str) -> DataLoader:
        return self._stories_loader(self._build()[split][task])

    def val_dataloader(self) -> DataLoader:
        return self.eval_loader(self.current_stage, "val")

    def test_dataloader(self) -> DataLoader:
        """Every stage's test stories together (the matrix callback evaluates them stage by stage)."""
        return self._stories_loader([e for group in self._build()["test"] for e in group])

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        from laart_lab.components.reasoner import ReasoningBatch

        if isinstance(batch, ReasoningBatch):
            return batch.to(device)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)
