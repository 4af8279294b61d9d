"""A 2-node run simulated on localhost: two ``torchrun`` launchers, one rendezvous on 127.0.0.1.

Each launcher starts one ``laart-lab fit`` process (``--trainer.strategy ddp --trainer.num_nodes 2``);
Lightning picks up torchrun's environment (TorchElasticEnvironment). A callback plugin saves every
rank's weights at the end: they must be identical (DDP all-reduces the gradients), and differ from
the initial weights (the ranks trained).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

DUMP_CALLBACK = """
import torch
import laart_lab
from lightning.pytorch import Callback


class DumpWeights(Callback):
    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath

    def on_train_start(self, trainer, pl_module):
        self._initial = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_train_end(self, trainer, pl_module):
        torch.save({"final": pl_module.state_dict(), "initial": self._initial, "world": trainer.world_size,
                    "node": trainer.node_rank, "steps": trainer.global_step},
                   f"{self.dirpath}/rank{trainer.global_rank}.pt")


@laart_lab.hookimpl
def register_callback(register):
    register("dump_weights", DumpWeights)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_node_torchrun_on_localhost_ends_with_identical_weights(tmp_path: Path, fake_site) -> None:
    fake_site("laart-dump", "0.1", {"dump": "dump_plugin"}, {"dump_plugin": DUMP_CALLBACK})
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    fit = [
        "-m", "laart_lab", "fit", "--config", "quickstart",
        "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "1",
        "--trainer.num_nodes", "2", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "6",
        "--trainer.limit_val_batches", "1", "--trainer.logger", "false",
        "--trainer.callbacks+=dump_weights", f"--trainer.callbacks.dirpath={tmp_path}",
    ]  # fmt: skip
    launchers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--node-rank",
                str(node),
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                str(port),
                *fit,
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for node in (0, 1)
    ]
    outputs = [launcher.communicate(timeout=600) for launcher in launchers]
    for launcher, (_, stderr) in zip(launchers, outputs):
        assert launcher.returncode == 0, stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2] and sorted(r["node"] for r in ranks) == [0, 1]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 6
    for name, tensor in ranks[0]["final"].items():
        assert torch.equal(tensor, ranks[1]["final"][name]), name
    assert any(not torch.equal(ranks[0]["final"][n], t) for n, t in ranks[0]["initial"].items())
