"""``ema_weights``: the average is what validation sees and checkpoints hold; buffers are the model's; resume works.

The reference is a moving average computed by hand from the weights recorded after every optimizer step.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from laart_lab.callbacks.ema_weights import EmaWeights
from laart_lab.callbacks.interrupt import INTERRUPT_FILENAME, InterruptCheckpoint

DECAY = 0.5  # large steps of the average, so that an average that is not updated, or updated twice, shows


class Regression(LightningModule):
    """A linear regression with two buffers that are state, not weights: a float step count and an int flag."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(3, 1)
        self.register_buffer("steps_seen", torch.zeros(()))
        self.register_buffer("chosen", torch.zeros((), dtype=torch.long))
        self.validated_with: list[torch.Tensor] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.steps_seen += 1
        x, y = batch
        return ((self.linear(x) - y) ** 2).mean()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if batch_idx == 0:
            self.validated_with.append(self.linear.weight.detach().clone())
        x, y = batch
        self.log("val_loss", ((self.linear(x) - y) ** 2).mean())

    def on_validation_epoch_end(self) -> None:
        self.chosen.fill_(int(self.current_epoch) + 7)  # like LaartModel's check threshold: chosen after validation

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class RecordWeights(Callback):
    """The weights after every optimizer step, and the weights a fit starts from."""

    def __init__(self) -> None:
        self.after_step: list[torch.Tensor] = []
        self.at_start: list[torch.Tensor] = []

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.at_start.append(pl_module.linear.weight.detach().clone())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.after_step.append(pl_module.linear.weight.detach().clone())


def moving_average(weights: list[torch.Tensor], decay: float) -> list[torch.Tensor]:
    """The average after each update: the first update copies, each later one is ``decay * avg + (1 - decay) * w``."""
    averages = [weights[0]]
    for w in weights[1:]:
        averages.append(decay * averages[-1] + (1 - decay) * w)
    return averages


def loader() -> DataLoader:
    x = torch.randn(24, 3, generator=torch.Generator().manual_seed(1))
    return DataLoader(TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5]])), batch_size=4)


def fit(
    tmp_path: Path, epochs: int, record: RecordWeights, ckpt_path: str | None = None, model: Regression | None = None
) -> tuple[Regression, Trainer]:
    """``model`` (a fresh :class:`Regression`) fit with ``ema_weights``, checkpoints every epoch and laart-lab's
    interrupt checkpoint (which also rewrites last.ckpt when training ends)."""
    model = model or Regression()
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            EmaWeights(decay=DECAY),
            record,
            ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", save_last=True, save_top_k=-1),
            InterruptCheckpoint(dirpath=str(tmp_path)),
        ],
    )
    trainer.fit(model, loader(), loader(), ckpt_path=ckpt_path)
    return model, trainer


def test_validation_and_checkpoints_hold_the_hand_computed_average(tmp_path: Path) -> None:
    record = RecordWeights()
    model, _ = fit(tmp_path, 2, record)
    averages = moving_average(record.after_step, DECAY)
    steps_per_epoch = len(record.after_step) // 2
    # validation after epoch e ran on the average of the steps so far (the first entry is the sanity check)
    for epoch, seen in enumerate(model.validated_with[1:]):
        torch.testing.assert_close(seen, averages[(epoch + 1) * steps_per_epoch - 1])
    epoch0 = torch.load(tmp_path / f"epoch=0-step={steps_per_epoch}.ckpt", weights_only=True)
    torch.testing.assert_close(epoch0["state_dict"]["linear.weight"], averages[steps_per_epoch - 1])
    torch.testing.assert_close(epoch0["current_model_state"]["linear.weight"], record.after_step[steps_per_epoch - 1])
    # buffers are copied, not averaged: the step count is whole, and the flag is the one chosen after validating
    assert float(epoch0["state_dict"]["steps_seen"]) == steps_per_epoch
    assert int(epoch0["state_dict"]["chosen"]) == 7
    # after fit the model holds the average; last.ckpt (written again after training) resumes from the trained weights
    torch.testing.assert_close(model.linear.weight.detach(), averages[-1])
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    torch.testing.assert_close(last["state_dict"]["linear.weight"], averages[-1])
    torch.testing.assert_close(last["current_model_state"]["linear.weight"], record.after_step[-1])
    assert int(last["state_dict"]["chosen"]) == 8


def test_a_resumed_fit_goes_on_from_the_trained_weights_and_the_same_average(tmp_path: Path) -> None:
    record = RecordWeights()
    fit(tmp_path, 1, record)
    steps_first = len(record.after_step)
    fit(tmp_path, 2, record, ckpt_path=str(tmp_path / "last.ckpt"))
    torch.testing.assert_close(record.at_start[1], record.after_step[steps_first - 1])  # not the average
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    torch.testing.assert_close(last["state_dict"]["linear.weight"], moving_average(record.after_step, DECAY)[-1])


class FailsInSecondValidation(Regression):
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if self.current_epoch == 1 and not self.trainer.sanity_checking:
            raise RuntimeError("the data went away")
        super().validation_step(batch, batch_idx)


def test_a_fit_that_fails_while_validating_the_average_saves_each_weight_set_where_it_belongs(tmp_path: Path) -> None:
    record = RecordWeights()
    with pytest.raises(RuntimeError, match="the data went away"):
        fit(tmp_path, 2, record, model=FailsInSecondValidation())
    saved = torch.load(tmp_path / f"{INTERRUPT_FILENAME}.ckpt", weights_only=True)
    torch.testing.assert_close(saved["state_dict"]["linear.weight"], moving_average(record.after_step, DECAY)[-1])
    torch.testing.assert_close(saved["current_model_state"]["linear.weight"], record.after_step[-1])


def test_evaluating_a_checkpoint_evaluates_its_average(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    record = RecordWeights()
    fit(tmp_path, 1, record)
    model = Regression()
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[EmaWeights(decay=DECAY)])
    trainer.validate(model, loader(), ckpt_path=str(tmp_path / "last.ckpt"), verbose=False)
    torch.testing.assert_close(model.validated_with[-1], moving_average(record.after_step, DECAY)[-1])
    assert not [w for w in recwarn if "WeightAveraging" in str(w.message)]  # nothing to restore, nothing to warn of


@pytest.mark.parametrize(("kwargs", "message"), [({"decay": 1.0}, "decay"), ({"update_every_n_steps": 0}, "counts")])
def test_bad_settings_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"ema_weights: .*{message}"):
        EmaWeights(**kwargs)


@pytest.mark.slow
def test_a_laart_checkpoint_validates_again_to_the_figures_its_fit_logged(tmp_path: Path) -> None:
    """LAART's check threshold is chosen after each validation (of the average): the checkpoint must hold it with the
    averaged weights, so validating the checkpoint again reproduces the fit's figures exactly."""
    from laart_lab.training_cli import LaartCLI
    from tests.test_laart import RECIPES, SMALL_GENERATED

    def cli(*extra: str) -> LaartCLI:
        args = [
            "--config", str(RECIPES / "laart_clutrr_generated.yaml"), "--trainer.enable_progress_bar", "false",
            "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.logger.init_args.version", "v",
            "--trainer.callbacks+=ema_weights", "--trainer.callbacks.init_args.decay=0.9", *SMALL_GENERATED, *extra,
        ]  # fmt: skip
        return LaartCLI(args, run=False)

    fitted = cli("--trainer.max_epochs", "3")
    fitted.trainer.fit(fitted.model, fitted.datamodule)
    best = fitted.trainer.checkpoint_callback.best_model_path
    saved = torch.load(best, weights_only=True)
    average, trained = saved["state_dict"], saved["current_model_state"]
    assert not torch.equal(average["reader.word.weight"], trained["reader.word.weight"])
    again = cli()
    again.trainer.validate(again.model, again.datamodule, ckpt_path=best, verbose=False)
    assert float(again.trainer.callback_metrics["val/acc"]) == pytest.approx(
        float(fitted.trainer.checkpoint_callback.best_model_score), abs=1e-6
    )
    assert float(again.model.check_threshold) == float(saved["state_dict"]["check_threshold"])
