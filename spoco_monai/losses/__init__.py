"""SPOCO losses: discriminative terms, single-instance term, unlabeled push, embedding consistency, adversarial
mask term (critic and WGAN-GP objectives), foreground and affinity side terms; LCFCN's point localisation loss;
SPML's pixel-to-segment contrast; WISE's anchor similarity."""

from __future__ import annotations

from spoco_monai.losses.adversarial import MaskCritic, WassersteinMaskLoss, object_box_masks
from spoco_monai.losses.affinity_side import AffinitySideLoss
from spoco_monai.losses.anchor_similarity import AnchorSimilarityLoss
from spoco_monai.losses.consistency import EmbeddingConsistencyLoss
from spoco_monai.losses.discriminative import DiscriminativeLoss
from spoco_monai.losses.foreground import ForegroundLoss
from spoco_monai.losses.kernel import kernel_sigma_squared
from spoco_monai.losses.pixel_to_segment import PixelToSegmentLoss
from spoco_monai.losses.point_localization import PointLocalizationLoss
from spoco_monai.losses.point_supervised import PointSupervisedLoss
from spoco_monai.losses.single_instance import ChosenObjects, SingleInstanceLoss
from spoco_monai.losses.spoco import SpocoLoss
from spoco_monai.losses.unlabeled_push import UnlabeledPushLoss

__all__ = [
    "AffinitySideLoss",
    "AnchorSimilarityLoss",
    "ChosenObjects",
    "DiscriminativeLoss",
    "EmbeddingConsistencyLoss",
    "ForegroundLoss",
    "MaskCritic",
    "PixelToSegmentLoss",
    "PointLocalizationLoss",
    "PointSupervisedLoss",
    "SingleInstanceLoss",
    "SpocoLoss",
    "UnlabeledPushLoss",
    "WassersteinMaskLoss",
    "kernel_sigma_squared",
    "object_box_masks",
]
