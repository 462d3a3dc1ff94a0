"""Ignite handlers of the instance-segmentation metrics, for ``key_val_metric``/``additional_metrics`` of engines.

Each handler wraps the matching :class:`InstanceSegmentationMetric`; ``output_transform`` extracts
``(y_pred, y)`` from ``engine.state.output`` (e.g. ``monai.handlers.from_engine(["pred", "label"])``), both
integer label tensors of shape (B, 1, *S) or lists of (1, *S) tensors. With ``save_details`` the per-image
scores go to ``engine.state.metric_details[name]``. Adapted Rand error and |DiC| are lower-is-better: as a key
metric they need ``metric_cmp_fn=lambda current, best: current < best`` on the engine. Label images loaded by
``LoadImaged`` are float by default: cast them first (``CastToTyped(keys, dtype=torch.int64)``).
"""

from __future__ import annotations

from collections.abc import Callable

from monai.handlers import IgniteMetricHandler
from monai.utils import MetricReduction

from spoco_monai.metrics.adapted_rand_error import AdaptedRandErrorMetric
from spoco_monai.metrics.average_precision import AveragePrecisionMetric, MeanAveragePrecisionMetric
from spoco_monai.metrics.count_difference import AbsoluteCountDifferenceMetric
from spoco_monai.metrics.symmetric_best_dice import SymmetricBestDiceMetric
from spoco_monai.metrics.variation_of_information import VariationOfInformationMetric


def _identity(output):
    return output


class SymmetricBestDice(IgniteMetricHandler):
    """Mean symmetric best Dice over the epoch (higher is better); see :class:`SymmetricBestDiceMetric`."""

    def __init__(
        self,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = _identity,
        save_details: bool = True,
    ) -> None:
        super().__init__(SymmetricBestDiceMetric(reduction=reduction), output_transform=output_transform,
                         save_details=save_details)


class AbsoluteCountDifference(IgniteMetricHandler):
    """Mean |DiC| over the epoch (lower is better); see :class:`AbsoluteCountDifferenceMetric`."""

    def __init__(
        self,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = _identity,
        save_details: bool = True,
    ) -> None:
        super().__init__(AbsoluteCountDifferenceMetric(reduction=reduction), output_transform=output_transform,
                         save_details=save_details)


class AdaptedRandError(IgniteMetricHandler):
    """Mean adapted Rand error over the epoch (lower is better); see :class:`AdaptedRandErrorMetric`."""

    def __init__(
        self,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = _identity,
        save_details: bool = True,
    ) -> None:
        super().__init__(AdaptedRandErrorMetric(reduction=reduction), output_transform=output_transform,
                         save_details=save_details)


class VariationOfInformation(IgniteMetricHandler):
    """Mean ``[split, merge]`` over the epoch as a (2,) tensor (lower is better); see
    :class:`VariationOfInformationMetric`. Not a scalar, so not usable as ``key_val_metric``."""

    def __init__(
        self,
        ignore_background: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN_BATCH,
        output_transform: Callable = _identity,
        save_details: bool = True,
    ) -> None:
        super().__init__(
            VariationOfInformationMetric(ignore_background=ignore_background, reduction=reduction),
            output_transform=output_transform,
            save_details=save_details,
        )


class AveragePrecision(IgniteMetricHandler):
    """Mean average precision at one IoU threshold over the epoch (higher is better); see
    :class:`AveragePrecisionMetric`."""

    def __init__(
        self,
        iou_threshold: float = 0.5,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = _identity,
        save_details: bool = True,
    ) -> None:
        super().__init__(
            AveragePrecisionMetric(iou_threshold=iou_threshold, reduction=reduction),
            output_transform=output_transform,
            save_details=save_details,
        )


class MeanAveragePrecision(IgniteMetricHandler):
    """Mean of the per-image mAP over IoU 0.5:0.05:0.95 over the epoch (higher is better); see
    :class:`MeanAveragePrecisionMetric`."""

    def __init__(
        self,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = _identity,
        save_details: bool = True,
    ) -> None:
        super().__init__(MeanAveragePrecisionMetric(reduction=reduction), output_transform=output_transform,
                         save_details=save_details)
