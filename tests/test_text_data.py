"""TextDataModule: tokenisation, deterministic split, cache invalidation, windows, resume and sharding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from laart_lab.data.text import CharTokenizer, TextDataError, TextDataModule, WindowDataset, WindowSampler

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 20


def write(tmp_path: Path, text: str | bytes, name: str = "input.txt") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def module(tmp_path: Path, path: Path, **kwargs) -> TextDataModule:
    kwargs.setdefault("block_size", 16)
    kwargs.setdefault("batch_size", 4)
    dm = TextDataModule(path=str(path), cache_dir=str(tmp_path / "cache"), **kwargs)
    dm.setup("fit")
    return dm


def test_char_round_trip_and_vocabulary() -> None:
    tok = CharTokenizer.from_text("hello, wörld")
    assert tok.vocabulary == "".join(sorted(set("hello, wörld")))
    ids = tok.encode("wörld hello")
    assert tok.decode(ids) == "wörld hello"
    with pytest.raises(TextDataError, match="'z'"):
        tok.encode("zebra")


def test_byte_round_trip_handles_any_utf8() -> None:
    tok = CharTokenizer(None)
    text = "naïve café — 東京 🎭"
    ids = tok.encode(text)
    assert tok.vocab_size == 256
    assert ids.tolist() == list(text.encode("utf-8"))
    assert tok.decode(ids) == text


def test_split_is_first_90_percent_then_last_10(tmp_path: Path) -> None:
    path = write(tmp_path, TEXT)
    dm = module(tmp_path, path)
    vocab = "".join(sorted(set(TEXT)))
    expected = np.array([vocab.index(c) for c in TEXT])
    cut = int(len(TEXT) * 0.9)
    assert dm.vocabulary == vocab
    assert np.array_equal(dm.tokens["train"], expected[:cut])
    assert np.array_equal(dm.tokens["val"], expected[cut:])
    assert np.array_equal(dm.tokens["test"], dm.tokens["val"])  # test = val without a test file
    again = module(tmp_path, path)  # a second construction gives identical arrays (from the cache)
    for split in ("train", "val"):
        assert np.array_equal(again.tokens[split], dm.tokens[split])
    assert dm.data_facts() == {"vocab_size": len(vocab), "vocabulary": vocab, "block_size": 16}


def test_separate_test_file_uses_training_vocabulary(tmp_path: Path) -> None:
    path = write(tmp_path, TEXT)
    test = write(tmp_path, "Speak, speak. " * 10, "test.txt")
    dm = module(tmp_path, path, test_path=str(test))
    assert dm.tokenizer is not None
    assert dm.tokenizer.decode(dm.tokens["test"]) == "Speak, speak. " * 10
    bad = write(tmp_path, "Zounds! " * 10, "bad.txt")
    with pytest.raises(TextDataError, match="bad.txt.*'Z'"):
        module(tmp_path, path, test_path=str(bad))


def test_cache_rebuilt_when_text_changes(tmp_path: Path) -> None:
    path = write(tmp_path, TEXT)
    dm = module(tmp_path, path)
    meta = dm.build_cache()
    mtime = meta.stat().st_mtime_ns
    assert module(tmp_path, path).build_cache().stat().st_mtime_ns == mtime  # unchanged text: reused
    write(tmp_path, TEXT.upper())
    changed = module(tmp_path, path)
    assert changed.tokenizer is not None
    assert changed.tokenizer.decode(changed.tokens["train"][:20]) == TEXT.upper()[:20]
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 3 and all(changed.build_cache().stem in name for name in files)  # stale files removed


def test_clear_errors_for_missing_empty_and_short(tmp_path: Path) -> None:
    with pytest.raises(TextDataError, match="does not exist"):
        module(tmp_path, tmp_path / "nope.txt")
    with pytest.raises(TextDataError, match="is empty"):
        module(tmp_path, write(tmp_path, "", "empty.txt"))
    with pytest.raises(TextDataError, match="fewer than one window"):
        module(tmp_path, write(tmp_path, "abcdefghij" * 5, "short.txt"), block_size=16)
    with pytest.raises(TextDataError, match="not valid UTF-8"):
        module(tmp_path, write(tmp_path, b"\xff\xfe" * 500, "binary.txt"))
    module(tmp_path, write(tmp_path, b"\xff\xfe" * 500, "binary2.txt"), tokenizer="byte")  # bytes are fine


def test_eval_windows_are_sequential_and_non_overlapping(tmp_path: Path) -> None:
    dm = module(tmp_path, write(tmp_path, TEXT))
    val = dm.tokens["val"]
    batches = list(dm.val_dataloader())
    inputs = torch.cat([b["input"] for b in batches])
    targets = torch.cat([b["target"] for b in batches])
    n = (len(val) - 1) // 16
    assert inputs.shape == (n, 16)
    assert np.array_equal(inputs.flatten().numpy(), val[: n * 16])
    assert np.array_equal(targets.flatten().numpy(), val[1 : n * 16 + 1])


def test_train_windows_are_random_shifted_and_reproducible(tmp_path: Path) -> None:
    dm = module(tmp_path, write(tmp_path, TEXT))
    train = torch.from_numpy(dm.tokens["train"].astype(np.int64))
    first = next(iter(dm.train_dataloader()))
    second = next(iter(module(tmp_path, write(tmp_path, TEXT)).train_dataloader()))
    assert torch.equal(first["input"], second["input"])
    starts = set()
    for x, y in zip(first["input"], first["target"]):
        assert torch.equal(x[1:], y[:-1])
        matches = [i for i in range(len(train) - 16) if torch.equal(train[i : i + 16], x) and train[i + 16] == y[-1]]
        assert matches
        starts.add(matches[0])
    assert len(starts) > 1


def test_stream_order_continues_each_row(tmp_path: Path) -> None:
    dm = module(tmp_path, write(tmp_path, TEXT), stream_order=True)
    loader = dm.train_dataloader()
    batches = [b for _, b in zip(range(3), loader)]
    assert batches[0]["stream_start"].all() and not batches[1]["stream_start"].any()
    train = dm.tokens["train"]
    stream_len = (len(train) - 1) // 4
    for step, batch in enumerate(batches):
        for row in range(4):
            start = row * stream_len + step * 16
            assert np.array_equal(batch["input"][row].numpy(), train[start : start + 16])


def test_sampler_resume_skips_consumed_windows_and_shards_ranks(tmp_path: Path) -> None:
    dm = module(tmp_path, write(tmp_path, TEXT))
    ds = WindowDataset(dm.tokens["train"], 16, "random", seed=3)
    full = list(WindowSampler(ds, 40, 4))
    resumed = WindowSampler(ds, 40, 4, skip=12, skip_epoch=0)
    assert list(resumed) == full[12:] and len(resumed) == 40  # len: the epoch's, as Lightning counts it
    resumed.set_epoch(1)
    plain = WindowSampler(ds, 40, 4)
    plain.set_epoch(1)
    assert list(resumed) == list(plain) and not set(plain) & set(full)  # new epoch, new windows
    rank0, rank1 = list(WindowSampler(ds, 40, 4, 2, 0)), list(WindowSampler(ds, 40, 4, 2, 1))
    assert len(rank0) == len(rank1) == 20 and not set(rank0) & set(rank1)


def test_default_path_follows_laart_lab_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tinyshakespeare").mkdir()
    write(tmp_path / "tinyshakespeare", TEXT)
    monkeypatch.setenv("LAART_LAB_DATA", str(tmp_path))
    dm = TextDataModule(cache_dir=str(tmp_path / "cache"), block_size=8)
    assert dm.path == tmp_path / "tinyshakespeare" / "input.txt"
    assert dm.data_facts()["vocab_size"] == len(set(TEXT))
    monkeypatch.setenv("LAART_LAB_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(TextDataError, match="LAART_LAB_DATA"):
        TextDataModule(cache_dir=str(tmp_path / "cache")).data_facts()
    assert os.environ["LAART_LAB_DATA"].endswith("elsewhere")
