"""``TextDataModule``: character- or byte-level language-modelling windows from one UTF-8 text file.

Tokenisation
    ``tokenizer="char"``: the vocabulary is the sorted set of characters of the training file (it
    travels to the model, and so to the checkpoint, as the ``vocabulary`` data fact).
    ``tokenizer="byte"``: the 256 byte values; any file works and nothing needs persisting.

Splits
    ``split="fraction"``: first ``1 - val_fraction`` of the file for training, the rest for validation;
    test = validation unless ``test_path`` names a separate file. ``split="enwik8"``: the standard
    90M / 5M / 5M split of the first 100M bytes (characters in char mode).

Cache
    Token arrays are written once as raw files in ``cache_dir`` (default ``$LAART_LAB_CACHE`` or
    ``~/.cache/laart_lab``) and read back memory-mapped, so workers and DDP ranks share pages. The
    cache key includes the text's SHA-256: editing the text rebuilds the cache (and removes the stale
    files of the same source).

Windows
    Training draws windows of ``block_size + 1`` tokens at pseudo-random offsets; evaluation uses
    sequential non-overlapping windows (the trailing remainder shorter than a window is dropped).
    ``stream_order=True`` instead cuts each split into ``batch_size`` contiguous streams per process:
    row ``r`` of batch ``i`` is the ``i``-th window of stream ``r``, so consecutive batches continue the
    same text row by row (what recurrent memory modules need). Every batch is a dict with ``input``
    and ``target`` (long ``[batch, block_size]``) and ``stream_start`` (bool ``[batch]``: this row starts
    a new stream, so per-stream memory must be reset before it).

Every window is a pure function of ``(seed, epoch, position)``, and a resumed run skips the batches
its checkpoint had already consumed, so an interrupted run continues the same data order.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from laart_lab.data.base import SplitDataModule
from laart_lab.data.resumable import ResumableLoader, resume_position, world
from laart_lab.paths import data_path

Tokenizer = Literal["char", "byte"]
SplitKind = Literal["fraction", "enwik8"]
Order = Literal["random", "sequential", "streams"]
ENWIK8_SPLIT = (90_000_000, 5_000_000, 5_000_000)
CACHE_ENV = "LAART_LAB_CACHE"
_CACHE_FORMAT = 1


class TextDataError(ValueError):
    """A text file that cannot be used (missing, empty, undecodable, too short)."""


# --------------------------------------------------------------------------------------------
# tokenisation
# --------------------------------------------------------------------------------------------
class CharTokenizer:
    """Maps text to ids and back. ``vocabulary=None`` means byte-level (ids are UTF-8 byte values)."""

    def __init__(self, vocabulary: str | None) -> None:
        self.vocabulary = vocabulary
        if vocabulary is not None:
            if len(set(vocabulary)) != len(vocabulary):
                raise ValueError("vocabulary has repeated characters")
            self._index = {ch: i for i, ch in enumerate(vocabulary)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return 256 if self.vocabulary is None else len(self.vocabulary)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.vocab_size <= 256 else np.uint16 if self.vocab_size <= 65536 else np.int32)

    def encode(self, text: str | bytes, source: str = "text") -> np.ndarray:
        """Token ids of ``text`` (``bytes`` accepted in byte mode); unknown characters are an error."""
        if self.vocabulary is None:
            raw = text.encode("utf-8") if isinstance(text, str) else text
            return np.frombuffer(raw, dtype=np.uint8).copy()
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        try:
            return np.fromiter((self._index[ch] for ch in text), dtype=self.dtype, count=len(text))
        except KeyError as err:
            raise TextDataError(
                f"{source} contains the character {err.args[0]!r}, which is not in the training vocabulary "
                f"of {self.vocab_size} characters; use tokenizer='byte' or a training text that contains it"
            ) from None

    def decode(self, ids: Any) -> str:
        """Text of a sequence of ids (bytes that do not form valid UTF-8 become U+FFFD)."""
        ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
        if self.vocabulary is None:
            return bytes(ids).decode("utf-8", errors="replace")
        return "".join(self.vocabulary[i] for i in ids)


# --------------------------------------------------------------------------------------------
# windows, samplers
# --------------------------------------------------------------------------------------------
def _mix(*values: int) -> int:
    """A 64-bit hash of integers (splitmix64 chain): cheap, stateless randomness per window."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & 0xFFFFFFFFFFFFFFFF)) + 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h


class WindowDataset(Dataset):
    """Windows of ``block_size + 1`` tokens addressed by an integer id (see :class:`WindowSampler`).

    * ``random``: id -> offset ``hash(seed, id) mod (n - block_size)``;
    * ``sequential``: id -> offset ``id * block_size``;
    * ``streams``: ``n_streams`` contiguous streams; id ``step * n_streams + s`` is window ``step`` of stream ``s``.
    """

    def __init__(self, tokens: np.ndarray, block_size: int, order: Order, seed: int = 0, n_streams: int = 1) -> None:
        self.tokens = tokens
        self.block_size = block_size
        self.order = order
        self.seed = seed
        self.n_streams = n_streams
        n = len(tokens)
        self.stream_len = (n - 1) // n_streams if order == "streams" else n - 1
        self.steps_per_stream = self.stream_len // block_size if order == "streams" else 0
        self.num_sequential = (n - 1) // block_size

    def __len__(self) -> int:
        if self.order == "streams":
            return self.steps_per_stream * self.n_streams
        return self.num_sequential

    def offset(self, window_id: int) -> tuple[int, bool]:
        b = self.block_size
        if self.order == "random":
            return _mix(self.seed, window_id) % (len(self.tokens) - b), True
        if self.order == "sequential":
            return window_id * b, True
        step, stream = divmod(window_id, self.n_streams)
        return stream * self.stream_len + step * b, step == 0

    def __getitem__(self, window_id: int) -> dict[str, torch.Tensor]:
        start, first = self.offset(int(window_id))
        chunk = torch.from_numpy(self.tokens[start : start + self.block_size + 1].astype(np.int64))
        return {"input": chunk[:-1], "target": chunk[1:], "stream_start": torch.tensor(first)}


class WindowSampler(DistributedSampler):
    """Yields window ids for one process, epoch by epoch, resumable mid-epoch.

    It subclasses ``DistributedSampler`` so Lightning leaves it in place under DDP: it shards by
    itself (``rank`` / ``num_replicas``). ``skip`` windows are dropped at the start of epoch
    ``skip_epoch`` only: that is how a resumed run continues where its checkpoint stopped.
    """

    def __init__(
        self,
        dataset: WindowDataset,
        windows_per_epoch: int,
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        skip: int = 0,
        skip_epoch: int = 0,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.dataset: WindowDataset = dataset
        self.batch_size = batch_size
        self.skip, self.skip_epoch = skip, skip_epoch
        if dataset.order == "streams":
            self.per_rank = dataset.steps_per_stream * batch_size
        elif dataset.order == "sequential":
            self.per_rank = len(range(rank, len(dataset), num_replicas))
        else:
            self.per_rank = math.ceil(windows_per_epoch / num_replicas)

    def _ids(self) -> list[int]:
        ds, r, w = self.dataset, self.rank, self.num_replicas
        if ds.order == "sequential":
            return list(range(r, len(ds), w))
        if ds.order == "streams":
            streams = range(r * self.batch_size, (r + 1) * self.batch_size)
            return [step * ds.n_streams + s for step in range(ds.steps_per_stream) for s in streams]
        base = self.epoch * self.per_rank
        return [(base + j) * w + r for j in range(self.per_rank)]

    def __iter__(self):
        ids = self._ids()
        if self.skip and self.epoch == self.skip_epoch:
            ids = ids[self.skip :]
        return iter(ids)

    def __len__(self) -> int:
        # the full epoch's length, also when resuming: Lightning counts a resumed epoch's batches from the
        # restored progress and ends it when that count reaches len(loader); a shortened length would end it early
        return self.per_rank


WindowLoader = ResumableLoader  #: the text module's name for the shared resumable loader (kept for imports)


# --------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "laart_lab"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_checked(path: Path, what: str) -> bytes:
    if not path.is_file():
        hint = (
            " (set LAART_LAB_DATA to the folder holding tinyshakespeare/input.txt, or pass --data.path)"
            if "tinyshakespeare" in str(path)
            else ""
        )
        raise TextDataError(f"{what} {path} does not exist{hint}")
    raw = path.read_bytes()
    if not raw:
        raise TextDataError(f"{what} {path} is empty")
    return raw


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TextDataError(
            f"{path} is not valid UTF-8 (byte {err.start}): {err.reason}; use tokenizer='byte' for binary text"
        ) from None


# --------------------------------------------------------------------------------------------
# data module
# --------------------------------------------------------------------------------------------
class TextDataModule(SplitDataModule):
    """Language-modelling windows over a text file (see the module docstring for every option).

    Args:
        path: training text (UTF-8). Default ``$LAART_LAB_DATA/tinyshakespeare/input.txt``.
        test_path: optional separate test text; otherwise test = validation.
        tokenizer: ``"char"`` (vocabulary from the training text) or ``"byte"`` (256 symbols).
        split: ``"fraction"`` (``val_fraction`` at the end) or ``"enwik8"`` (90M/5M/5M).
        block_size: tokens per window the model sees (targets are shifted by one).
        batch_size / eval_batch_size: windows per batch for training / evaluation (per process).
        windows_per_epoch: training windows per epoch (all processes); default one pass in expectation.
        stream_order: feed windows as ``batch_size`` ordered streams (for memory modules).
        max_eval_windows: evaluate on only the first N windows of val/test (quick periodic checks).
        seed: seed of the window offsets (independent of the global seed).
        cache_dir: where token arrays are cached (default ``$LAART_LAB_CACHE`` or ``~/.cache/laart_lab``).
    """

    def __init__(
        self,
        path: str | None = None,
        test_path: str | None = None,
        tokenizer: Tokenizer = "char",
        split: SplitKind = "fraction",
        val_fraction: float = 0.1,
        block_size: int = 256,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        windows_per_epoch: int | None = None,
        stream_order: bool = False,
        max_eval_windows: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        if tokenizer not in ("char", "byte"):
            raise ValueError(f"tokenizer must be 'char' or 'byte', got {tokenizer!r}")
        if split not in ("fraction", "enwik8"):
            raise ValueError(f"split must be 'fraction' or 'enwik8', got {split!r}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if block_size < 1 or batch_size < 1:
            raise ValueError(f"block_size and batch_size must be >= 1, got {block_size}, {batch_size}")
        # persistent workers: window reads are pure functions of (seed, epoch, position), so nothing restarts
        super().__init__(batch_size=batch_size, seed=seed, num_workers=num_workers, persistent_workers=True)
        self.save_hyperparameters()
        self.path = Path(path).expanduser() if path else data_path("tinyshakespeare", "input.txt")
        self.test_path = Path(test_path).expanduser() if test_path else None
        self.tokenizer_kind = tokenizer
        self.split = split
        self.val_fraction = val_fraction
        self.block_size = block_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.windows_per_epoch = windows_per_epoch
        self.stream_order = stream_order
        self.max_eval_windows = max_eval_windows
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.tokenizer: CharTokenizer | None = None
        self.tokens: dict[str, np.ndarray] = {}

    # -- cache ------------------------------------------------------------------------------
    def _cache_stem(self) -> str:
        source = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:8]
        test = hashlib.sha256(str(self.test_path.resolve()).encode()).hexdigest()[:8] if self.test_path else "none"
        return f"{self.path.stem}-{source}-{self.tokenizer_kind}-{self.split}-{self.val_fraction}-{test}"

    def _cache_key(self) -> str:
        content = _sha256(_checked_path(self.path, "training text"))
        if self.test_path is not None:
            content = hashlib.sha256(
                (content + _sha256(_checked_path(self.test_path, "test text"))).encode()
            ).hexdigest()
        return f"{self._cache_stem()}-{content[:16]}"

    def build_cache(self) -> Path:
        """Tokenise and write the split arrays unless a cache for this exact text exists; return its meta file."""
        key = self._cache_key()
        meta_path = self.cache_dir / f"{key}.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta.get("format") == _CACHE_FORMAT and all(
                (self.cache_dir / f"{key}.{s}.bin").is_file() for s in meta["lengths"]
            ):
                return meta_path
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        raw = _read_checked(self.path, "training text")
        text: str | bytes = raw if self.tokenizer_kind == "byte" else _decode(raw, self.path)
        tokenizer = CharTokenizer(None) if self.tokenizer_kind == "byte" else CharTokenizer.from_text(text)  # type: ignore[arg-type]
        ids = tokenizer.encode(text, source=str(self.path))
        splits = self._split(ids)
        if self.test_path is not None:
            test_raw = _read_checked(self.test_path, "test text")
            test_text = test_raw if self.tokenizer_kind == "byte" else _decode(test_raw, self.test_path)
            splits["test"] = tokenizer.encode(test_text, source=str(self.test_path))
        for name, array in splits.items():
            tmp = self.cache_dir / f"{key}.{name}.bin.tmp{os.getpid()}"
            array.astype(tokenizer.dtype).tofile(tmp)
            os.replace(tmp, self.cache_dir / f"{key}.{name}.bin")
        meta = {
            "format": _CACHE_FORMAT,
            "source": str(self.path),
            "test_source": str(self.test_path) if self.test_path else None,
            "vocabulary": tokenizer.vocabulary,
            "dtype": tokenizer.dtype.str,
            "lengths": {name: int(len(array)) for name, array in splits.items()},
        }
        tmp = meta_path.with_suffix(f".json.tmp{os.getpid()}")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, meta_path)
        self._remove_stale(key)
        return meta_path

    def _remove_stale(self, key: str) -> None:
        """Delete cached arrays of the same source built from an older version of the text."""
        stem = self._cache_stem()
        for old in self.cache_dir.glob(f"{stem}-*"):
            if not old.name.startswith(key) and ".tmp" not in old.name:
                old.unlink(missing_ok=True)

    def _split(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        if self.split == "enwik8":
            n_train, n_val, n_test = ENWIK8_SPLIT
            if len(ids) < n_train + n_val + n_test:
                raise TextDataError(
                    f"split='enwik8' needs {n_train + n_val + n_test:,} tokens; {self.path} has {len(ids):,}"
                )
            return {
                "train": ids[:n_train],
                "val": ids[n_train : n_train + n_val],
                "test": ids[n_train + n_val : n_train + n_val + n_test],
            }
        cut = int(len(ids) * (1.0 - self.val_fraction))
        return {"train": ids[:cut], "val": ids[cut:]}

    def _load(self) -> None:
        if self.tokens:
            return
        meta_path = self.build_cache()
        meta = json.loads(meta_path.read_text())
        key = meta_path.stem
        self.tokenizer = CharTokenizer(meta["vocabulary"])
        for name, length in meta["lengths"].items():
            self.tokens[name] = np.memmap(
                self.cache_dir / f"{key}.{name}.bin", dtype=np.dtype(meta["dtype"]), mode="r", shape=(length,)
            )
        self.tokens.setdefault("test", self.tokens["val"])
        need = self.block_size + 1
        for name in ("train", "val", "test"):
            if len(self.tokens[name]) < need:
                raise TextDataError(
                    f"the {name} split of {self.path} has {len(self.tokens[name])} tokens, fewer than one window of "
                    f"block_size + 1 = {need}; use a longer text or a smaller block_size"
                )

    # -- Lightning hooks --------------------------------------------------------------------
    def data_facts(self) -> dict[str, Any]:
        """Facts the model takes from the data: ``vocab_size``, ``vocabulary`` (None in byte mode), ``block_size``."""
        self._load()
        assert self.tokenizer is not None
        return {
            "vocab_size": self.tokenizer.vocab_size,
            "vocabulary": self.tokenizer.vocabulary,
            "block_size": self.block_size,
        }

    @property
    def vocabulary(self) -> str | None:
        self._load()
        assert self.tokenizer is not None
        return self.tokenizer.vocabulary

    def prepare_data(self) -> None:
        self.build_cache()  # once per node, before the ranks memory-map the arrays in setup()

    def setup(self, stage: str | None = None) -> None:
        self._load()

    def _loader(
        self, split: str, order: Order, batch_size: int, windows_per_epoch: int, skip: tuple[int, int] = (0, 0)
    ) -> DataLoader:
        replicas, rank = world()
        tokens = self.tokens[split]
        n_streams = batch_size * replicas if order == "streams" else 1
        if order == "streams" and (len(tokens) - 1) // n_streams < self.block_size:
            raise TextDataError(
                f"stream_order: the {split} split ({len(tokens)} tokens) is too short for {n_streams} streams of "
                f"at least one {self.block_size}-token window; lower the batch size or block_size"
            )
        dataset = WindowDataset(tokens, self.block_size, order, seed=self.seed, n_streams=n_streams)
        epoch, batches = skip
        sampler = WindowSampler(
            dataset, windows_per_epoch, batch_size, replicas, rank, skip=batches * batch_size, skip_epoch=epoch
        )
        return ResumableLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )

    def split_loader(self, split: str) -> DataLoader:
        """Training: windows at hashed offsets (or streams), resumed where the trainer stopped; val/test:
        sequential windows (or streams)."""
        if split != "train":
            return self._eval_loader(split)
        self._load()
        order: Order = "streams" if self.stream_order else "random"
        per_epoch = self.windows_per_epoch or max(len(self.tokens["train"]) // self.block_size, self.batch_size)
        return self._loader("train", order, self.batch_size, per_epoch, skip=resume_position(self))

    def _eval_loader(self, split: str) -> DataLoader:
        self._load()
        tokens = self.tokens[split]
        if self.max_eval_windows is not None:
            tokens = tokens[: self.max_eval_windows * self.block_size + 1]
            self.tokens[f"{split}_limited"] = tokens
        order: Order = "streams" if self.stream_order else "sequential"
        return self._loader(
            f"{split}_limited" if self.max_eval_windows is not None else split, order, self.eval_batch_size, 0
        )

    def snippet(self, length: int, split: str = "val") -> torch.Tensor:
        """The first ``length`` tokens of a split (a fixed snippet for samples and attention maps)."""
        self._load()
        return torch.from_numpy(np.asarray(self.tokens[split][:length]).astype(np.int64))

    def state_dict(self) -> dict[str, Any]:
        self._load()
        assert self.tokenizer is not None
        return {"vocabulary": self.tokenizer.vocabulary, "tokenizer": self.tokenizer_kind}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._load()
        assert self.tokenizer is not None
        if state_dict.get("vocabulary") != self.tokenizer.vocabulary:
            raise TextDataError(
                f"the checkpoint was trained with a different vocabulary than {self.path} gives "
                f"({state_dict.get('vocabulary')!r} vs {self.tokenizer.vocabulary!r}); use the same training text"
            )


def _checked_path(path: Path, what: str) -> Path:
    _read_checked_exists(path, what)
    return path


def _read_checked_exists(path: Path, what: str) -> None:
    if not path.is_file():
        _read_checked(path, what)  # raises the standard message
    elif path.stat().st_size == 0:
        raise TextDataError(f"{what} {path} is empty")


def batch_size_of(batch: dict[str, torch.Tensor]) -> int:
    """Windows in a batch (for Lightning's ``ThroughputMonitor(batch_size_fn=...)``)."""
    return int(batch["input"].shape[0])


def tokens_in(batch: dict[str, torch.Tensor]) -> int:
    """Tokens in a batch (for ``ThroughputMonitor(length_fn=...)``: items per second = tokens/s)."""
    return int(batch["input"].numel())
