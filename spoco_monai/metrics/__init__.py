"""Instance-segmentation metrics: functions on label arrays, MONAI cumulative metrics and ignite handlers.

All are computed from one sparse overlap table per image (:func:`label_overlap`); the ``*_from_overlap``
functions score a table that is already built, so several metrics of one image share a single pass over the
pixels. Labels: 0 is background, -1 in the ground truth marks ignored pixels, other ids are objects (any
integer dtype, ids need not be consecutive).
"""

from __future__ import annotations

from spoco_monai.metrics.adapted_rand_error import (
    AdaptedRandErrorMetric,
    adapted_rand_error,
    adapted_rand_error_from_overlap,
)
from spoco_monai.metrics.annotated_objects import annotated_object_iou, annotated_rand_error
from spoco_monai.metrics.average_precision import (
    MEAN_AP_IOU_THRESHOLDS,
    AveragePrecisionMetric,
    MeanAveragePrecisionMetric,
    average_precision,
    average_precision_from_overlap,
    mean_average_precision,
    mean_average_precision_from_overlap,
)
from spoco_monai.metrics.count_difference import (
    AbsoluteCountDifferenceMetric,
    absolute_count_difference,
    absolute_count_difference_from_overlap,
)
from spoco_monai.metrics.handlers import (
    AbsoluteCountDifference,
    AdaptedRandError,
    AveragePrecision,
    MeanAveragePrecision,
    SymmetricBestDice,
    VariationOfInformation,
)
from spoco_monai.metrics.instance_metric import InstanceSegmentationMetric
from spoco_monai.metrics.instance_scores import INSTANCE_SCORE_KEYS, instance_scores, mean_instance_scores
from spoco_monai.metrics.overlap import LabelOverlap, label_overlap
from spoco_monai.metrics.symmetric_best_dice import (
    SymmetricBestDiceMetric,
    symmetric_best_dice,
    symmetric_best_dice_from_overlap,
)
from spoco_monai.metrics.variation_of_information import (
    VariationOfInformationMetric,
    variation_of_information,
    variation_of_information_from_overlap,
)

__all__ = [
    "annotated_object_iou",
    "annotated_rand_error",
    "instance_scores",
    "AbsoluteCountDifference",
    "AbsoluteCountDifferenceMetric",
    "AdaptedRandError",
    "AdaptedRandErrorMetric",
    "AveragePrecision",
    "AveragePrecisionMetric",
    "INSTANCE_SCORE_KEYS",
    "InstanceSegmentationMetric",
    "LabelOverlap",
    "MEAN_AP_IOU_THRESHOLDS",
    "MeanAveragePrecision",
    "MeanAveragePrecisionMetric",
    "SymmetricBestDice",
    "SymmetricBestDiceMetric",
    "VariationOfInformation",
    "VariationOfInformationMetric",
    "absolute_count_difference",
    "absolute_count_difference_from_overlap",
    "adapted_rand_error",
    "adapted_rand_error_from_overlap",
    "average_precision",
    "average_precision_from_overlap",
    "label_overlap",
    "mean_average_precision",
    "mean_average_precision_from_overlap",
    "mean_instance_scores",
    "symmetric_best_dice",
    "symmetric_best_dice_from_overlap",
    "variation_of_information",
    "variation_of_information_from_overlap",
]
