"""The shared data-module plumbing (:mod:`laart_lab.data.base`) keeps every module's data exactly as it was.

The fingerprints below were computed from the code *before* the loader plumbing moved into the shared
base (commit ac61601 on main): the first batches of every split, the train/validation split ids, and the
first batch of a run resumed mid-epoch, for each data module at a fixed seed. They pin data order, split
contents and resume behaviour; a change to any of them is a change of the data a run trains on.
"""

from __future__ import annotations

import hashlib
import random
import re
from itertools import islice
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from lightning.pytorch import LightningDataModule

from laart_lab.data.clutrr import ClutrrDataModule
from laart_lab.data.recall import RecallDataModule
from laart_lab.data.synthetic import MarkedTokenDataModule
from laart_lab.data.text import TextDataModule

# not periodic, so that windows at different offsets differ (random.Random's choices are stable across versions)
TEXT = "".join(random.Random(0).choices("abcdefgh ij\n", k=2400))


ADDED_AFTER_THE_PINS = {"name_gender"}  # StoryBatch.name_gender (None with name_genders=None)


def fingerprint(value: Any) -> str:
    """A short hash of a batch (tensors by dtype, shape and bytes; lists, dicts and plain values by repr)."""
    digest = hashlib.sha256()

    def feed(item: Any) -> None:
        if isinstance(item, torch.Tensor):
            digest.update(f"{item.dtype}{tuple(item.shape)}".encode())
            digest.update(item.contiguous().numpy().tobytes())
        elif isinstance(item, dict):
            for key in sorted(item):
                digest.update(str(key).encode())
                feed(item[key])
        elif isinstance(item, (list, tuple)):
            digest.update(f"[{len(item)}".encode())
            for element in item:
                feed(element)
        elif hasattr(item, "__dataclass_fields__"):  # fields added after the pins count only when they are set
            fields = {name: getattr(item, name) for name in item.__dataclass_fields__}
            feed({name: v for name, v in fields.items() if not (name in ADDED_AFTER_THE_PINS and v is None)})
        else:
            digest.update(repr(item).encode())

    feed(value)
    return digest.hexdigest()[:16]


def resumed_at(module: LightningDataModule, epoch: int, batches: int) -> None:
    """Attach a stand-in trainer whose fit loop stopped after ``batches`` batches of ``epoch``."""
    progress = SimpleNamespace(
        epoch_progress=SimpleNamespace(current=SimpleNamespace(processed=epoch)),
        epoch_loop=SimpleNamespace(batch_progress=SimpleNamespace(current=SimpleNamespace(processed=batches))),
    )
    module.trainer = SimpleNamespace(fit_loop=progress)  # type: ignore[assignment]


def set_epoch(loader: Any, epoch: int) -> None:
    """What Lightning's fit loop does at the start of every epoch: tell the loader's sampler the epoch."""
    for sampler in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)


def first(loader: Any, count: int = 2) -> list[Any]:
    torch.manual_seed(0)  # what seed_everything does: CLUTRR's text view draws training entity slots from it
    return list(islice(iter(loader), count))


def fingerprints(module: LightningDataModule) -> dict[str, str]:
    """First train/val/test batches, fresh and resumed at epoch 1 after 2 batches."""
    module.setup("fit")
    test = module.test_dataloader()
    found = {
        "train": fingerprint(first(module.train_dataloader())),
        "val": fingerprint(first(module.val_dataloader())),
        "test": fingerprint([first(loader) for loader in test] if isinstance(test, list) else first(test)),
    }
    resumed_at(module, epoch=1, batches=2)
    resumed = module.train_dataloader()
    set_epoch(resumed, 1)
    found["resumed"] = fingerprint(first(resumed))
    return found


def test_marked_token_batches_are_unchanged() -> None:
    module = MarkedTokenDataModule(train_size=64, val_size=32, test_size=32, batch_size=8, seed=3)
    assert fingerprints(module) == PINNED["marked_token"]


def test_recall_batches_are_unchanged() -> None:
    module = RecallDataModule(
        batch_size=4, train_batches=6, val_batches=3, test_batches=3, block_size=32, queries_per_window=8, seed=2
    )
    assert fingerprints(module) == PINNED["recall"]


@pytest.mark.parametrize("stream_order", [False, True])
def test_text_batches_are_unchanged(tmp_path: Path, stream_order: bool) -> None:
    path = tmp_path / "input.txt"
    path.write_text(TEXT, encoding="utf-8")
    module = TextDataModule(
        path=str(path), cache_dir=str(tmp_path / "cache"), block_size=16, batch_size=4, seed=5,
        stream_order=stream_order,
    )  # fmt: skip
    assert fingerprints(module) == PINNED[f"text_streams={stream_order}"]


@pytest.mark.parametrize("view", ["graph", "text"])
def test_clutrr_split_and_batches_are_unchanged(view: str) -> None:
    module = ClutrrDataModule(
        source="generated", generated_train_rows=120, generated_test_rows=10, generated_test_ks=[2, 4],
        batch_size=16, seed=1, view=view, name_genders=None,  # the pin predates the name evidence
    )  # fmt: skip
    found = fingerprints(module)
    found["split_ids"] = fingerprint([[e.id for e in module.train_set], [e.id for e in module.val_set]])
    assert found == PINNED[f"clutrr_{view}"]


PINNED: dict[str, dict[str, str]] = {  # computed with the code before the refactor (see the module docstring)
    "marked_token": {
        "train": "668be830bc3b1104",
        "val": "6f0a129f0549d9f4",
        "test": "7781e3cd742dba4b",
        "resumed": "e1297d31f6f1a9d2",
    },
    "recall": {
        "train": "6b86160b0b4af7d3",
        "val": "985a97a158dc9365",
        "test": "a59fc54e299b6ebf",
        "resumed": "fd098aacf9941f3d",
    },
    "text_streams=False": {
        "train": "c44c85579703819e",
        "val": "e388936817147760",
        "test": "e388936817147760",
        "resumed": "33c308cc2d1e63b1",
    },
    "text_streams=True": {
        "train": "b72437c326116695",
        "val": "6a56ebdd5383efd4",
        "test": "6a56ebdd5383efd4",
        "resumed": "051a9d540eb6d7d9",
    },
    "clutrr_graph": {
        "train": "210f9a47d22b32c6",
        "val": "b6f7d4fe15f5b655",
        "test": "ea74f586b9aeaa45",
        "resumed": "6bfee0e74c0e4192",
        "split_ids": "613b422a8c0b1868",
    },
    "clutrr_text": {  # train/resumed re-pinned when ReaderSupervision gained pair_stated (the other fields: unchanged)
        "train": "8890d728880a384b",
        "val": "d0cf180028754edf",
        "test": "0472d193c62bbdcc",
        "resumed": "1697454b5011b61c",
        "split_ids": "613b422a8c0b1868",
    },
}


def _resumable_modules(tmp_path: Path) -> list[LightningDataModule]:
    path = tmp_path / "input.txt"
    path.write_text(TEXT, encoding="utf-8")
    return [
        MarkedTokenDataModule(train_size=64, val_size=32, test_size=32, batch_size=8, seed=3),
        TextDataModule(path=str(path), cache_dir=str(tmp_path / "cache"), block_size=16, batch_size=4, seed=5),
        ClutrrDataModule(source="generated", generated_train_rows=120, generated_test_rows=10, batch_size=16),
        ClutrrDataModule(  # batches of like length: the order is still a function of (seed, epoch)
            source="generated", generated_train_rows=120, generated_test_rows=10, batch_size=16, length_pool=3
        ),
    ]


def test_a_resumed_epoch_continues_the_uninterrupted_order(tmp_path: Path) -> None:
    for module in _resumable_modules(tmp_path):
        module.setup("fit")
        resumed_at(module, epoch=1, batches=0)
        uninterrupted = module.train_dataloader()
        set_epoch(uninterrupted, 1)
        expected = first(uninterrupted, 5)[2:]
        resumed_at(module, epoch=1, batches=2)
        resumed = module.train_dataloader()
        set_epoch(resumed, 1)
        assert len(resumed) == len(uninterrupted)  # Lightning counts the resumed epoch from its restored progress
        assert fingerprint(first(resumed, 3)) == fingerprint(expected), type(module).__name__


def test_length_pooled_batches_are_a_reordering_of_like_lengths() -> None:
    """Properties of :func:`length_pooled`: the same ids, every batch but the last full and inside one
    pool, each batch's lengths a run of its pool sorted by length, and the order seeded."""
    from laart_lab.data.resumable import length_pooled

    lengths = [random.Random(i).randrange(5, 200) for i in range(203)]
    ids = list(range(203))
    random.Random(0).shuffle(ids)
    out = length_pooled(ids, lengths, batch_size=8, pool=5, rng=random.Random(1))
    assert sorted(out) == sorted(ids)
    batches = [out[i : i + 8] for i in range(0, len(out), 8)]
    assert all(len(b) == 8 for b in batches[:-1]) and len(batches[-1]) == 203 % 8
    pools = [sorted(ids[i : i + 40], key=lambda j: lengths[j]) for i in range(0, 203, 40)]
    for batch in batches:
        pool = next(p for p in pools if batch[0] in p)
        start = pool.index(batch[0])
        assert pool[start : start + len(batch)] == batch  # a run of its pool, by length
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    random_spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in
                        (ids[i : i + 8] for i in range(0, 203, 8))) / len(batches)  # fmt: skip
    assert spread < random_spread / 3
    assert out == length_pooled(ids, lengths, 8, 5, random.Random(1))
    assert out != length_pooled(ids, lengths, 8, 5, random.Random(2))


def test_length_pool_mixes_whole_text_batches_and_pads_less() -> None:
    plain = ClutrrDataModule(source="generated", view="text", generated_train_rows=400, batch_size=16, mix_stories=0.5)
    pooled = ClutrrDataModule(
        source="generated", view="text", generated_train_rows=400, batch_size=16, mix_stories=0.5, length_pool=8
    )
    fill = {}
    for name, module in (("plain", plain), ("pooled", pooled)):
        module.setup("fit")
        torch.manual_seed(0)
        batches = list(module.train_dataloader())
        fill[name] = sum(float(b.story.padding_mask.float().mean()) for b in batches) / len(batches)
        # a story mixed with a second one names that story's people renamed apart ("<name> <seed>x<j>")
        mixed = [[any(re.search(r" \d+x\d+$", n) for n in names) for names in b.meta["entity_names"]] for b in batches]
        if name == "pooled":  # whole batches are mixed, about half of them
            assert all(len(set(m)) == 1 for m in mixed) and 0.25 < sum(m[0] for m in mixed) / len(mixed) < 0.75
        else:
            assert any(len(set(m)) == 2 for m in mixed)
    assert fill["pooled"] > fill["plain"] + 0.1
    with pytest.raises(ValueError, match="length_pool counts batches"):
        ClutrrDataModule(source="generated", length_pool=-1)


def test_worker_settings_reach_every_loader(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_text(TEXT, encoding="utf-8")
    text = TextDataModule(path=str(path), cache_dir=str(tmp_path / "cache"), block_size=16, num_workers=2)
    clutrr = ClutrrDataModule(source="generated", generated_train_rows=60, generated_test_rows=5, num_workers=2)
    for module, persistent in ((text, True), (clutrr, False)):
        module.setup("fit")
        test = module.test_dataloader()
        loaders = [module.train_dataloader(), module.val_dataloader(), *(test if isinstance(test, list) else [test])]
        assert [(loader.num_workers, loader.persistent_workers) for loader in loaders] == [(2, persistent)] * len(
            loaders
        )
