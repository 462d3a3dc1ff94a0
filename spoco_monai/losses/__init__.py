"""SPOCO losses: discriminative terms, single-instance term, unlabeled push, embedding consistency."""

from __future__ import annotations

from spoco_monai.losses.consistency import EmbeddingConsistencyLoss
from spoco_monai.losses.discriminative import DiscriminativeLoss
from spoco_monai.losses.foreground import ForegroundLoss
from spoco_monai.losses.kernel import kernel_sigma_squared
from spoco_monai.losses.single_instance import SingleInstanceLoss
from spoco_monai.losses.spoco import SpocoLoss
from spoco_monai.losses.unlabeled_push import UnlabeledPushLoss

__all__ = [
    "DiscriminativeLoss",
    "EmbeddingConsistencyLoss",
    "ForegroundLoss",
    "SingleInstanceLoss",
    "SpocoLoss",
    "UnlabeledPushLoss",
    "kernel_sigma_squared",
]
