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
from typing import Any, ClassVar

from monai.handlers import IgniteMetricHandler
from monai.utils import MetricReduction

from spoco_monai.metrics.adapted_rand_error import AdaptedRandErrorMetric
from spoco_monai.metrics.average_precision import AveragePrecisionMetric, MeanAveragePrecisionMetric
from spoco_monai.metrics.count_difference import AbsoluteCountDifferenceMetric
from spoco_monai.metrics.instance_metric import InstanceSegmentationMetric
from spoco_monai.metrics.symmetric_best_dice import SymmetricBestDiceMetric
from spoco_monai.metrics.variation_of_information import VariationOfInformationMetric


def _identity(output):
    return output


class InstanceMetricHandler(IgniteMetricHandler):
    """Base of the handlers: builds ``metric_class(reduction=..., **metric_options)`` and hands it to ignite."""

    metric_class: ClassVar[type[InstanceSegmentationMetric]]
    default_reduction: ClassVar[MetricReduction] = MetricReduction.MEAN

    def __init__(
        self,
        reduction: MetricReduction | str | None = None,
        output_transform: Callable = _identity,
        save_details: bool = True,
        **metric_options: Any,
    ) -> None:
        if reduction is None:
            reduction = self.default_reduction
        metric = self.metric_class(reduction=reduction, **metric_options)
        super().__init__(metric, output_transform=output_transform, save_details=save_details)


class SymmetricBestDice(InstanceMetricHandler):
    """Mean symmetric best Dice over the epoch (higher is better); see :class:`SymmetricBestDiceMetric`."""

    metric_class = SymmetricBestDiceMetric


class AbsoluteCountDifference(InstanceMetricHandler):
    """Mean |DiC| over the epoch (lower is better); see :class:`AbsoluteCountDifferenceMetric`."""

    metric_class = AbsoluteCountDifferenceMetric


class AdaptedRandError(InstanceMetricHandler):
    """Mean adapted Rand error over the epoch (lower is better); see :class:`AdaptedRandErrorMetric`."""

    metric_class = AdaptedRandErrorMetric


class VariationOfInformation(InstanceMetricHandler):
    """Mean ``[split, merge]`` over the epoch as a (2,) tensor (lower is better); see
    :class:`VariationOfInformationMetric` (option ``ignore_background``). Not a scalar, so not usable as
    ``key_val_metric``."""

    metric_class = VariationOfInformationMetric
    default_reduction = MetricReduction.MEAN_BATCH


class AveragePrecision(InstanceMetricHandler):
    """Mean average precision at one IoU threshold over the epoch (higher is better); see
    :class:`AveragePrecisionMetric` (option ``iou_threshold``, default 0.5)."""

    metric_class = AveragePrecisionMetric


class MeanAveragePrecision(InstanceMetricHandler):
    """Mean of the per-image mAP over IoU 0.5:0.05:0.95 over the epoch (higher is better); see
    :class:`MeanAveragePrecisionMetric`."""

    metric_class = MeanAveragePrecisionMetric
