"""Callback contracts: lazy matplotlib, one warning without TensorBoard, loud misconfiguration, grad norm."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from types import SimpleNamespace

import pytest
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from laart_lab.callbacks.attention_maps import AttentionMaps
from laart_lab.callbacks.box_volume_stats import BoxVolumeStats
from laart_lab.callbacks.grad_norm import GradNormMonitor
from laart_lab.callbacks.text_samples import TextSamples
from laart_lab.models.charlm import CharLM
from laart_lab.plugins.attention import SoftmaxAttention


def test_importing_the_callbacks_leaves_the_matplotlib_backend_alone():
    """Loading a callback (as every registry load may) must not switch matplotlib's backend, e.g. a notebook's."""
    code = (
        "import matplotlib, laart_lab.callbacks.attention_maps, laart_lab.callbacks.composition_table_image; "
        "print(matplotlib.get_backend())"
    )
    env = {**os.environ, "MPLBACKEND": "svg"}  # what a user chose; the Agg switch happens only when drawing
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "svg", out.stderr


def _trainer(tmp_path, logger) -> Trainer:
    return Trainer(accelerator="cpu", logger=logger, enable_progress_bar=False, default_root_dir=str(tmp_path))


@pytest.mark.parametrize("callback", [TextSamples(), BoxVolumeStats()])
def test_tensorboard_callbacks_warn_once_without_a_tensorboard_logger(tmp_path, callback):
    from laart_lab.reasoning.slrm import SLRM

    module = LightningModule()
    module.reasoner = SLRM(3, dim=4, hidden=8, num_concepts=2)  # what BoxVolumeStats inspects: only TB is missing
    with pytest.warns(UserWarning, match=f"{type(callback).__name__} logs .* no TensorBoardLogger"):
        callback.setup(_trainer(tmp_path, False), module, "fit")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with a TensorBoard logger: silent
        callback.setup(_trainer(tmp_path, TensorBoardLogger(str(tmp_path))), module, "fit")


def test_attention_maps_fail_loudly_without_a_transformer_stack(tmp_path):
    trainer = _trainer(tmp_path, TensorBoardLogger(str(tmp_path)))
    trainer.datamodule = SimpleNamespace(snippet=lambda n: torch.arange(n))  # type: ignore[misc]
    with pytest.raises(MisconfigurationException, match="TransformerStack `stack`.*not LightningModule"):
        AttentionMaps().setup(trainer, LightningModule(), "fit")
    model = CharLM(vocabulary="abc", attention=SoftmaxAttention, d_model=8, n_layers=1, n_heads=2)
    AttentionMaps().setup(trainer, model, "fit")  # both prerequisites met: no error
    trainer.datamodule = SimpleNamespace()  # type: ignore[misc]
    with pytest.raises(MisconfigurationException, match=r"data module with snippet\(length\)"):
        AttentionMaps().setup(trainer, model, "validate")


@pytest.mark.parametrize("norm_type,expected", [(2.0, 2.0), ("inf", float("inf")), (1, 1.0)])
def test_grad_norm_logs_the_total_norm_of_all_gradients(norm_type, expected):
    module = LightningModule()
    module.a = torch.nn.Parameter(torch.zeros(3))
    module.b = torch.nn.Parameter(torch.zeros(2, 2))
    module.frozen = torch.nn.Parameter(torch.zeros(4))  # no gradient: left out
    module.a.grad = torch.tensor([3.0, -4.0, 0.0])
    module.b.grad = torch.tensor([[1.0, -2.0], [2.0, 0.5]])
    logged = {}
    module.log = lambda name, value, **kwargs: logged.update({name: float(value)})  # type: ignore[method-assign]
    monitor = GradNormMonitor(norm_type=norm_type, every_n_steps=2)
    trainer = SimpleNamespace(global_step=1, log_every_n_steps=1)
    monitor.on_before_optimizer_step(trainer, module, None)  # type: ignore[arg-type]
    assert logged == {}  # step 1 is not a multiple of every_n_steps
    trainer.global_step = 2
    monitor.on_before_optimizer_step(trainer, module, None)  # type: ignore[arg-type]
    flat = torch.cat([module.a.grad.flatten(), module.b.grad.flatten()])
    assert logged["train/grad_norm"] == pytest.approx(torch.linalg.vector_norm(flat, expected).item())


@pytest.mark.parametrize("bad", [0, -1.0, "two"])
def test_grad_norm_rejects_a_bad_norm_type(bad):
    with pytest.raises(ValueError, match=f"norm_type must be a positive number or 'inf', got {bad!r}"):
        GradNormMonitor(norm_type=bad)
