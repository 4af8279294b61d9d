"""Learning-rate schedules shared by the models: linear warm-up, then cosine decay to a floor.

The cosine can run over a step budget or over the Trainer's ``max_time``. A run whose length is set by
time (a recipe that must fit in 13 minutes on any machine) does not know in advance how many steps it
will take; decaying over the step estimate leaves it cut short half-way down the cosine on a slow
machine. With ``schedule="time"`` the decay follows whichever budget is further spent, steps or time,
so the run reaches the floor learning rate when its time is up, whatever its throughput.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Timer

LrSchedule = Literal["steps", "time"]
LR_SCHEDULES: tuple[str, ...] = get_args(LrSchedule)


def check_schedule(schedule: str, owner: str) -> None:
    """A clear error for an unknown schedule name (``owner``: the model, for the message)."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"{owner} lr_schedule must be 'steps' or 'time'; got {schedule!r}")


def warmup_cosine(step: int, warmup: int, total: int, floor: float, time_progress: float = 0.0) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step``.

    Linear warm-up over ``warmup`` steps, then a cosine from 1 to ``floor`` whose progress is the larger
    of the step fraction ``(step - warmup) / (total - warmup)`` and ``time_progress`` (0 for a step
    schedule). Warm-up is always step-based: it is about the optimizer's state, not the budget.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, max((step - warmup) / max(1, total - warmup), time_progress))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def fit_timer(trainer: Trainer | None, owner: str) -> Timer:
    """The Trainer's ``max_time`` timer; a clear error naming the fix when the run has no time budget."""
    timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None) if trainer is not None else None
    if timer is None or timer.time_remaining("train") is None:
        raise ValueError(
            f"{owner} lr_schedule='time' decays the learning rate over the run's time budget: set "
            "trainer.max_time (e.g. --trainer.max_time 00:00:03:00) or use lr_schedule: steps"
        )
    return timer


def time_progress(trainer: Trainer | None, owner: str) -> float:
    """Fraction of the Trainer's ``max_time`` spent in fit so far (validation within fit included)."""
    timer = fit_timer(trainer, owner)
    elapsed, remaining = timer.time_elapsed("train"), timer.time_remaining("train") or 0.0
    return elapsed / max(elapsed + remaining, 1e-9)
