"""Cumulative parity: the data module and ParityCTM (checkpoints, metrics, the tick-stats callback)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from laart_ctm.callbacks import CTMTickStats, batch_targets
from laart_ctm.parity import ParityCTM
from laart_ctm.parity_data import ParityDataModule, cumulative_parity, sample_bits

TINY = dict(
    iterations=3,
    d_model=12,
    memory_length=2,
    heads=2,
    d_attention=8,
    d_embed=8,
    n_sync_out=8,
    n_sync_action=4,
    nlm_hidden=2,
)


def test_cumulative_parity_matches_a_loop() -> None:
    bits = torch.randint(0, 2, (20, 9), generator=torch.Generator().manual_seed(0))
    for row, parity in zip(bits.tolist(), cumulative_parity(bits).tolist()):
        running, expected = 0, []
        for bit in row:
            running ^= bit
            expected.append(running)
        assert parity == expected


def test_splits_are_held_out_and_targets_consistent() -> None:
    data = ParityDataModule(seq_len=6, train_size=3000, val_size=20, test_size=30, batch_size=16)
    assert data.data_facts() == {"seq_len": 6}
    data.setup()
    held_out = {tuple(row) for split in ("val", "test") for row in data.splits[split].tensors[0].tolist()}
    train_bits, train_targets = data.splits["train"].tensors
    assert train_bits.shape == (3000, 6)
    assert not held_out & {tuple(row) for row in train_bits.tolist()}
    assert torch.equal(train_targets, cumulative_parity(train_bits))
    bits, targets = next(iter(data.test_dataloader()))
    assert bits.shape == targets.shape == (16, 6)


def test_sample_bits_refuses_when_everything_is_held_out() -> None:
    every = torch.tensor([[a, b] for a in (0, 1) for b in (0, 1)])
    with pytest.raises(ValueError, match="held-out"):
        sample_bits(5, 2, torch.Generator().manual_seed(0), every)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"seq_len": 0}, "seq_len"), ({"test_size": 0}, "test_size"), ({"batch_size": 0}, "batch_size")],
)
def test_bad_data_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ParityDataModule(**kwargs)


def test_model_needs_seq_len_and_checks_it() -> None:
    with pytest.raises(ValueError, match="seq_len"):
        ParityCTM(**TINY)
    model = ParityCTM(seq_len=5, **TINY)
    assert model(torch.randint(0, 2, (2, 5))).logits.shape == (2, 3, 5, 2)
    with pytest.raises(ValueError, match="5 bits"):
        model(torch.randint(0, 2, (2, 4)))


def test_joint_token_encoding_has_one_vector_per_position_and_bit() -> None:
    model = ParityCTM(seq_len=4, token_encoding="joint", **TINY)
    bits = torch.tensor([[0, 1, 1, 0], [1, 1, 0, 0]])
    tokens = model.embed(bits)
    table = model.token_embedding.weight
    assert torch.equal(tokens[0, 1], table[2 * 1 + 1]) and torch.equal(tokens[1, 3], table[2 * 3 + 0])
    assert model(bits).logits.shape == (2, 3, 4, 2)
    assert not hasattr(model, "position_embedding")
    with pytest.raises(ValueError, match="token_encoding"):
        ParityCTM(seq_len=4, token_encoding="sum", **TINY)


def test_batch_targets_layouts() -> None:
    target = torch.tensor([1, 0])
    assert batch_targets((torch.zeros(2), target)) is target
    assert batch_targets({"target": target}) is target
    assert batch_targets(torch.zeros(2)) is None


def test_tick_stats_match_a_naive_recount_and_checkpoint_loads_weights_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = ParityDataModule(seq_len=5, train_size=256, val_size=40, test_size=70, batch_size=32)
    model = ParityCTM(seq_len=5, **TINY)
    stats = CTMTickStats()
    trainer = Trainer(
        max_steps=4,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[stats],
        num_sanity_val_steps=0,
        limit_val_batches=1,
    )
    trainer.fit(model, data)
    results = trainer.test(model, data, verbose=False)[0]
    summary = stats.last_summary["test"]

    # naive recount over the test split, tick by tick
    model.eval()
    bits, targets = data.splits["test"].tensors
    with torch.no_grad():
        output = model(bits)
    ticks = output.logits.shape[1]
    naive = [float((output.logits[:, t].argmax(-1) == targets).float().mean()) for t in range(ticks)]
    assert summary["acc_by_tick"] == pytest.approx(naive, abs=1e-5)
    certain = output.certainty.argmax(dim=1)
    assert torch.equal(summary["most_certain_tick"], certain)
    at_certain = (output.logits[torch.arange(len(bits)), certain].argmax(-1) == targets).float().mean()
    assert summary["acc_most_certain"] == pytest.approx(float(at_certain), abs=1e-5)
    assert results["test/acc"] == pytest.approx(
        float(at_certain), abs=1e-5
    )  # test/acc is per-position accuracy
    seq = (output.logits[torch.arange(len(bits)), certain].argmax(-1) == targets).all(dim=1).float().mean()
    assert results["test/seq_acc"] == pytest.approx(float(seq), abs=1e-5)

    path = tmp_path / "parity.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"]["seq_len"] == 5
    restored = ParityCTM.load_from_checkpoint(path, weights_only=True)
    with torch.no_grad():
        assert torch.allclose(restored.eval()(bits).logits, output.logits, atol=1e-6)


def test_tick_selection_position_reads_each_running_parity_at_its_own_most_certain_tick() -> None:
    torch.manual_seed(0)
    model = ParityCTM(seq_len=5, tick_selection="position", **TINY).eval()
    bits = torch.randint(0, 2, (4, 5))
    output = model(bits)
    probabilities = output.logits.softmax(dim=-1)
    certainty = 1 + (probabilities * probabilities.log()).sum(dim=-1) / torch.log(torch.tensor(2.0))
    answer = model.answer(output)
    for b in range(4):
        for position in range(5):
            tick = int(certainty[b, :, position].argmax())
            assert torch.equal(answer[b, position], output.logits[b, tick, position])
    per_example = ParityCTM(seq_len=5, **TINY)
    per_example.load_state_dict(model.state_dict())
    ticks = per_example.ctm(per_example.embed(bits)).most_certain_tick()
    assert torch.equal(per_example.eval().answer(output), output.logits[torch.arange(4), ticks])
    with pytest.raises(ValueError, match="tick_selection"):
        ParityCTM(seq_len=5, tick_selection="tick", **TINY)


def test_parity_batches_are_those_of_before_the_shared_data_base() -> None:
    """Fingerprints of the first two batches of each split, computed with ParityDataModule's own loaders
    (main at bab6ac0, before it used laart_lab.data.base): the data order must not change."""

    def digest(loader) -> str:
        batches = [torch.stack(batch) for _, batch in zip(range(2), loader)]
        return hashlib.sha256(torch.stack(batches).numpy().tobytes()).hexdigest()[:16]

    data = ParityDataModule(seq_len=6, train_size=100, val_size=20, test_size=20, batch_size=8, seed=4)
    data.setup("fit")
    found = {name: digest(getattr(data, f"{name}_dataloader")()) for name in ("train", "val", "test")}
    assert found == {"train": "e4042d3dacd270d6", "val": "417f9892ac81bdb0", "test": "3a363c1d7b2f49fe"}
    assert len(data.train_dataloader()) == 100 // 8  # the last partial training batch is dropped
