"""Two-process DDP (CPU, gloo) with the SLRM: its ``pair_evidence`` buffer counts the two-relation paths of
*both* ranks' shards, and is the same on both ranks (DDP broadcasts rank 0's buffers before each forward,
so a per-rank count would silently become rank 0's)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import run_two_rank_script

SCRIPT = """
import sys
import torch
from lightning.pytorch import Callback, Trainer
from laart_lab.data.clutrr import ClutrrDataModule
from laart_lab.models.reasoning import RelationReasoning
from laart_lab.reasoning.slrm import SLRM

out = sys.argv[1]
torch.manual_seed(0)
data = ClutrrDataModule(source="generated", generated_train_rows=400, generated_test_rows=20, batch_size=16, seed=0)
data.prepare_data()
data.setup("fit")
n = data.data_facts()["num_relations"]


class CountLocalPairs(Callback):
    # the independent reference: this rank's own two-relation training paths, counted outside the SLRM
    def __init__(self):
        self.counts = torch.zeros(n + 4, n + 4)

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        lengths = batch.path_mask.sum(1)
        for a, b in batch.path[lengths == 2][:, :2].tolist():
            self.counts[a, b] += 1


model = RelationReasoning(reasoner=lambda k: SLRM(k, dim=8, hidden=16, num_concepts=4), num_relations=n)
local = CountLocalPairs()
trainer = Trainer(max_steps=6, accelerator="cpu", devices=2, strategy="ddp", logger=False, callbacks=[local],
                  enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                  num_sanity_val_steps=0, limit_val_batches=0)
trainer.fit(model, data)
assert isinstance(model.reasoner, SLRM)
torch.save({"evidence": model.reasoner.pair_evidence.detach().cpu(), "local": local.counts,
            "world": trainer.world_size}, f"{out}/rank{trainer.global_rank}.pt")
"""


@pytest.mark.slow
def test_two_process_ddp_pair_evidence_counts_every_rank_and_agrees(tmp_path: Path) -> None:
    rank0, rank1 = run_two_rank_script(SCRIPT, tmp_path)
    assert not torch.equal(rank0["local"], rank1["local"])  # the ranks trained on different shards
    both = rank0["local"] + rank1["local"]
    assert both.sum() > 0
    assert torch.equal(rank0["evidence"], rank1["evidence"])
    assert torch.equal(rank0["evidence"], both)
