"""Write the optimiser's learning rate to TensorBoard, as an event writer of MONAI's ``TensorBoardStatsHandler``."""

from __future__ import annotations

from typing import Any

from ignite.engine import Engine

LEARNING_RATE_TAG = "learning_rate"


def write_learning_rate(engine: Engine, writer: Any) -> None:
    """Write the learning rate of ``engine.optimizer`` at ``engine.state.iteration`` and flush the writer.

    Use as ``iteration_event_writer`` of ``monai.handlers.TensorBoardStatsHandler`` (which creates the writer and
    chooses the iterations); the value logged at an iteration is the rate its optimiser step used, since the
    ``LrScheduleHandler`` steps at the end of epochs.

    Tags: ``learning_rate`` for an optimiser with one parameter group, ``learning_rate/<i>`` per group otherwise.
    (ignite's ``OptimizerParamsHandler`` would write ``lr/group_<i>`` even for one group, through a
    ``TensorboardLogger`` of its own, i.e. a second event file beside that of MONAI's handlers.)

    Args:
        engine: a trainer with an ``optimizer`` attribute (e.g. ``SupervisedTrainer``, ``SpocoTrainer``).
        writer: a TensorBoard ``SummaryWriter`` (or tensorboardX's).

    Raises:
        TypeError: ``engine`` has no ``optimizer``.
    """
    optimizer = getattr(engine, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "param_groups"):
        raise TypeError(f"write_learning_rate needs a trainer with an optimizer, found {type(engine).__name__}.")
    groups = optimizer.param_groups
    for index, group in enumerate(groups):
        tag = LEARNING_RATE_TAG if len(groups) == 1 else f"{LEARNING_RATE_TAG}/{index}"
        writer.add_scalar(tag, float(group["lr"]), engine.state.iteration)
    writer.flush()
