"""Continual-learning metrics of a stage-by-stage evaluation matrix (pure functions, no torch).

``matrix[i][j]`` is the score on evaluation task ``j`` after training stage ``i``; ``initial[j]`` the score
of the untrained model (for forward transfer); ``stage_tasks[i]`` the task stage ``i`` trains on (stages
may return to an earlier task, e.g. Shakespeare -> Python -> Shakespeare has tasks ``[0, 1, 0]``).
``higher_is_better`` is True for accuracy and False for bits per character; every "gain" below is
signed so that a positive number is good and every "forgetting" so that a positive number is bad:

* ``final_average``: mean over tasks of the last row (Lopez-Paz & Ranzato, 2017: ACC);
* ``learning``: mean over stages of the score on the task just trained, ``matrix[i][stage_tasks[i]]``
  (plasticity: how well each new stage is learned);
* ``backward_transfer`` (BWT): mean over tasks not trained by the last stage of
  ``gain(matrix[last_i(j)][j] -> matrix[-1][j])``, where ``last_i(j)`` is the last stage that trained ``j``;
  negative = forgetting;
* ``forgetting`` (Chaudhry et al., 2018): over the same tasks, the mean of the best score any earlier
  row had minus the final score (in the good direction; negative when the final score is the best);
* ``interim_forgetting``: for every task, the largest drop from its score right after a stage that trained
  it to its score after any later stage (the final row included), averaged over tasks: this also
  counts a task that was forgotten and then trained again (Shakespeare in stage 2 of the text stream);
* ``forward_transfer`` (FWT): mean over stages ``i >= 1`` whose task is new of
  ``gain(initial[j] -> matrix[i-1][j])``: what earlier stages did for a task before it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean
from typing import Any

__all__ = ["continual_metrics"]


def _check(matrix: Sequence[Sequence[float]], stage_tasks: Sequence[int], initial: Sequence[float] | None) -> int:
    if not matrix:
        raise ValueError("continual_metrics: the matrix has no rows (no stage was evaluated)")
    n_tasks = len(matrix[0])
    if any(len(row) != n_tasks for row in matrix):
        raise ValueError("continual_metrics: every row of the matrix needs one score per task")
    if len(stage_tasks) != len(matrix):
        raise ValueError(f"continual_metrics: {len(matrix)} rows but {len(stage_tasks)} stage tasks")
    if any(not 0 <= t < n_tasks for t in stage_tasks):
        raise ValueError(f"continual_metrics: stage tasks {list(stage_tasks)} must be in 0..{n_tasks - 1}")
    if initial is not None and len(initial) != n_tasks:
        raise ValueError(f"continual_metrics: initial has {len(initial)} scores, expected {n_tasks}")
    return n_tasks


def continual_metrics(
    matrix: Sequence[Sequence[float]],
    stage_tasks: Sequence[int] | None = None,
    initial: Sequence[float] | None = None,
    higher_is_better: bool = True,
) -> dict[str, Any]:
    """The metrics of the module docstring; ``stage_tasks`` defaults to ``[0, 1, ..., T-1]`` (one task a stage).

    A metric with no task to average over (e.g. BWT after one stage) is ``None``.
    """
    tasks = list(range(len(matrix))) if stage_tasks is None else list(stage_tasks)
    n_tasks = _check(matrix, tasks, initial)
    sign = 1.0 if higher_is_better else -1.0

    def gain(before: float, after: float) -> float:
        return sign * (after - before)

    last = len(matrix) - 1
    final = list(matrix[last])
    trained_at: dict[int, list[int]] = {j: [i for i, t in enumerate(tasks) if t == j] for j in range(n_tasks)}
    old = [j for j in range(n_tasks) if trained_at[j] and tasks[last] != j]
    bwt = [gain(matrix[max(trained_at[j])][j], final[j]) for j in old]
    forgetting = [max(gain(final[j], matrix[i][j]) for i in range(last)) for j in old]
    interim = []
    for j in range(n_tasks):
        drops = [gain(matrix[i2][j], matrix[i][j]) for i in trained_at[j] for i2 in range(i + 1, len(matrix))]
        if drops:
            interim.append(max(0.0, *drops))
    fwt = []
    if initial is not None:
        for i in range(1, len(matrix)):
            j = tasks[i]
            if min(trained_at[j]) == i:
                fwt.append(gain(initial[j], matrix[i - 1][j]))
    return {
        "final_average": fmean(final),
        "learning": fmean(matrix[i][tasks[i]] for i in range(len(matrix))),
        "backward_transfer": fmean(bwt) if bwt else None,
        "forgetting": fmean(forgetting) if forgetting else None,
        "interim_forgetting": fmean(interim) if interim else None,
        "forward_transfer": fmean(fwt) if fwt else None,
    }
