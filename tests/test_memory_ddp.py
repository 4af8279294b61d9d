"""A two-process DDP run on CPU (gloo) with concept growth: it completes and both ranks hold identical concepts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import run_two_rank_script

SCRIPT = """
import sys
import torch
from lightning.pytorch import Trainer
from laart_lab.callbacks.concept_growth import ConceptGrowth
from laart_lab.data.recall import RecallDataModule
from laart_lab.models.charlm import CharLM

out = sys.argv[1]
torch.manual_seed(0)
spec = {"class_path": "concept_growth", "init_args": {"capacity": 16, "initial": 2, "novelty_threshold": 0.9}}
model = CharLM(vocab_size=40, block_size=16, d_model=32, n_layers=2, n_heads=2, memory=spec, warmup_steps=1)
data = RecallDataModule(block_size=16, pairs=4, queries_per_window=3, batch_size=4, train_batches=8, val_batches=1,
                        test_batches=1)
growth = ConceptGrowth(grow_every=2, think_every=4, max_new=2, min_novelty=0.0, retire_below=-1.0)
trainer = Trainer(max_steps=8, accelerator="cpu", devices=2, strategy="ddp", logger=False, callbacks=[growth],
                  enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                  num_sanity_val_steps=0, limit_val_batches=0)
trainer.fit(model, data)
data_first = next(iter(data.train_dataloader()))["input"]  # this rank's streams (sharded by rank)
layer = model.memory
torch.save({"concepts": layer.concepts.detach(), "values": layer.values.detach(), "active": layer.active,
            "counters": growth.counters, "world": trainer.world_size, "first_input": data_first},
           f"{out}/rank{trainer.global_rank}.pt")
"""


@pytest.mark.slow
def test_two_process_ddp_growth_keeps_ranks_identical(tmp_path: Path) -> None:
    rank0, rank1 = run_two_rank_script(SCRIPT, tmp_path)
    assert not torch.equal(rank0["first_input"], rank1["first_input"])  # the ranks trained on different streams
    assert rank0["counters"] == rank1["counters"] and rank0["counters"]["grown"] > 0
    assert int(rank0["active"].sum()) > 2
    assert torch.equal(rank0["active"], rank1["active"])
    assert torch.equal(rank0["concepts"], rank1["concepts"])
    assert torch.equal(rank0["values"], rank1["values"])
