"""Adapted Rand error (SNEMI3D / CREMI / PlantSeg), identical to ``skimage.metrics.adapted_rand_error``."""

from __future__ import annotations

import numpy as np

from spoco_monai.metrics.instance_metric import InstanceSegmentationMetric
from spoco_monai.metrics.overlap import LabelArray, LabelOverlap, label_overlap


def _pair_ratio(numerator: float, denominator: float) -> float:
    # no pair of pixels shares a segment, so no pair can be wrongly joined or split
    return float(numerator / denominator) if denominator > 0 else 1.0


def adapted_rand_error_from_overlap(
    overlap: LabelOverlap, return_precision_recall: bool = False
) -> float | tuple[float, float, float]:
    """Adapted Rand error of a precomputed overlap table (see :func:`adapted_rand_error`)."""
    on_gt_object = overlap.gt_ids[overlap.gt_index] != 0
    counts = overlap.counts[on_gt_object]
    n_pixels = counts.sum()
    gt_sizes = overlap.gt_sizes[overlap.gt_ids != 0]
    pred_sizes = np.bincount(overlap.pred_index[on_gt_object], weights=counts, minlength=len(overlap.pred_ids))
    # ordered pairs of distinct pixels in the same segment: in both images, in gt, in pred
    same_in_both = counts @ counts - n_pixels
    same_in_gt = gt_sizes @ gt_sizes - n_pixels
    same_in_pred = pred_sizes @ pred_sizes - n_pixels
    error = 1.0 - _pair_ratio(same_in_both, 0.5 * same_in_gt + 0.5 * same_in_pred)
    if not return_precision_recall:
        return float(error)
    return float(error), _pair_ratio(same_in_both, same_in_gt), _pair_ratio(same_in_both, same_in_pred)


def adapted_rand_error(
    pred: LabelArray, gt: LabelArray, return_precision_recall: bool = False
) -> float | tuple[float, float, float]:
    """Adapted Rand error, 1 - F-score of the Rand precision and recall (Arganda-Carreras et al., 2015).

    Equal to ``skimage.metrics.adapted_rand_error(image_true=gt, image_test=pred)``: pixels with ``gt == 0``
    (and ``gt == -1``) are ignored; predicted 0 is an ordinary segment, so unassigned foreground counts as one
    merged segment (a missed object costs nothing unless the predicted background also covers other objects;
    see :func:`average_precision` for detection errors). Precision and recall are returned as scikit-image
    returns them: ``precision = pairs joined in both / pairs joined in gt`` (lowered by splits) and
    ``recall = pairs joined in both / pairs joined in pred`` (lowered by merges); scikit-image's docstring
    describes them the other way round (scikit-image issue #6485). The error is symmetric in the two.

    Where scikit-image divides 0 by 0 (no two evaluated pixels share a segment, e.g. ``gt`` without objects),
    the ratio is 1: nothing can be wrongly joined or split. Hence ``gt`` without objects gives error 0 for any
    prediction (every pixel is ignored); use :func:`absolute_count_difference` or AP to see extra objects.

    Args:
        pred: predicted labels, integer np.ndarray or torch.Tensor of shape S.
        gt: ground-truth labels of shape S.
        return_precision_recall: also return precision and recall.

    Returns:
        The error in [0, 1] (lower is better), or ``(error, precision, recall)``.

    Raises:
        TypeError: when an input is not integer-typed.
        ValueError: when the shapes differ or ids are negative (other than -1 in ``gt``).
    """
    return adapted_rand_error_from_overlap(label_overlap(pred, gt), return_precision_recall)


class AdaptedRandErrorMetric(InstanceSegmentationMetric):
    """Adapted Rand error per sample (see :func:`adapted_rand_error`), averaged by ``aggregate()``; lower is better.

    Inputs, reduction and ``get_not_nans`` as in :class:`InstanceSegmentationMetric`.
    """

    def _sample_scores(self, overlap: LabelOverlap) -> tuple[float, ...]:
        return (adapted_rand_error_from_overlap(overlap),)
