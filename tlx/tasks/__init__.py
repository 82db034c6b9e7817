"""Tasks: what a model's outputs are scored by, summarised as and predicted as.

The trainer, the compiled steps, evaluation and prediction know no task-specific name: they ask
the run's :class:`~tlx.tasks.base.Task` for the loss and metric sums of a batch, for the summary of
an evaluation, for the line the progress bar shows and for what a prediction holds and prints as.
Classification is the first task; detection and domain adaptation add theirs here.
"""

from __future__ import annotations

from tlx.errors import ConfigError
from tlx.tasks.base import Task, batch_weights
from tlx.tasks.classification import Classification
from tlx.tasks.detection import Detection

TASKS: dict[str, type] = {"classification": Classification, "detection": Detection}


def get_task(name: str = "classification") -> Task:
    """The task called `name` (``config.task``)."""
    if name not in TASKS:
        raise ConfigError(
            f"config.task={name!r} is not a task tlx knows; expected one of {sorted(TASKS)}."
        )
    return TASKS[name]()


__all__ = ["TASKS", "Classification", "Detection", "Task", "batch_weights", "get_task"]
