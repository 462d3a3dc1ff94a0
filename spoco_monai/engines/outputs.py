"""Read the SPOCO trainer's output for logging handlers (StatsHandler, TensorBoardStatsHandler, ProgressBar)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.utils.enums import CommonKeys as Keys

from spoco_monai.engines.trainer import LOSS_TERMS


def loss_and_terms(output: Mapping[str, Any]) -> dict[str, float]:
    """The total loss and each SpocoLoss term of one iteration, as plain floats.

    Use as ``output_transform`` of ``StatsHandler``/``TensorBoardStatsHandler``: each entry is logged under its own
    tag (``loss``, ``loss_pull``, ``loss_push``, ...).

    Args:
        output: ``engine.state.output`` of a :class:`~spoco_monai.engines.SpocoTrainer`.

    Returns:
        ``{"loss": total, "loss_<term>": value, ...}``.

    Raises:
        TypeError: ``output`` is not a trainer output dict with a ``loss`` entry.
    """
    if not isinstance(output, Mapping) or Keys.LOSS not in output:
        raise TypeError(
            f"expected the SpocoTrainer output dict with a '{Keys.LOSS}' entry, found {type(output).__name__}."
        )
    loss = output[Keys.LOSS]
    values = {Keys.LOSS: float(loss.detach() if isinstance(loss, torch.Tensor) else loss)}
    values.update({f"loss_{name}": float(value) for name, value in output.get(LOSS_TERMS, {}).items()})
    return values
