"""``BoxVolumeStats``: statistics of the relation boxes' log-volumes (collapse or blow-up shows here).

For reasoners exposing ``box_log_volumes() -> [N]`` and ``num_relations`` (the SLRM): logs the mean,
min and max log-volume of the named relations' boxes and of the concept boxes, plus a histogram.
"""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from laart_lab.callbacks._reasoner import ReasonerInspector
from laart_lab.callbacks._tensorboard import tensorboard_writer
from laart_lab.components.reasoner import HasRelationBoxes


class BoxVolumeStats(ReasonerInspector):
    contract = HasRelationBoxes
    tensorboard_output = "the log-volume histogram (the scalars go to every logger)"

    @override
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        reasoner = self.reasoner(pl_module)
        if trainer.sanity_checking or reasoner is None:
            return
        volumes = reasoner.box_log_volumes().detach().float()
        groups = {"named": volumes[: reasoner.num_relations], "concepts": volumes[reasoner.num_relations :]}
        for name, values in groups.items():
            if values.numel():
                pl_module.log(f"boxes/{name}_log_volume_mean", values.mean())
                pl_module.log(f"boxes/{name}_log_volume_min", values.min())
                pl_module.log(f"boxes/{name}_log_volume_max", values.max())
        writer = tensorboard_writer(trainer)
        if writer is not None:
            writer.add_histogram("boxes/log_volume", volumes.cpu(), trainer.global_step)
