"""Absolute difference in object count, |DiC| (CVPPP)."""

from __future__ import annotations

from spoco_monai.metrics.instance_metric import InstanceSegmentationMetric
from spoco_monai.metrics.overlap import LabelArray, LabelOverlap, label_overlap


def absolute_count_difference_from_overlap(overlap: LabelOverlap) -> int:
    """|DiC| of a precomputed overlap table (see :func:`absolute_count_difference`)."""
    return abs(overlap.n_pred_objects - overlap.n_gt_objects)


def absolute_count_difference(pred: LabelArray, gt: LabelArray) -> int:
    """Absolute difference between the number of predicted and ground-truth objects, |DiC|.

    Objects are the distinct ids other than 0 (ids need not be consecutive). Pixels where ``gt == -1`` are
    ignored, so an object lying entirely in the ignored region is not counted.

    Args:
        pred: predicted labels, integer np.ndarray or torch.Tensor of shape S.
        gt: ground-truth labels of shape S.

    Returns:
        |#pred objects - #gt objects| >= 0, lower is better.

    Raises:
        TypeError: when an input is not integer-typed.
        ValueError: when the shapes differ or ids are negative (other than -1 in ``gt``).
    """
    return absolute_count_difference_from_overlap(label_overlap(pred, gt))


class AbsoluteCountDifferenceMetric(InstanceSegmentationMetric):
    """|DiC| per sample (see :func:`absolute_count_difference`), averaged by ``aggregate()``.

    Inputs, reduction and ``get_not_nans`` as in :class:`InstanceSegmentationMetric`.
    """

    def _sample_scores(self, overlap: LabelOverlap) -> tuple[float, ...]:
        return (float(absolute_count_difference_from_overlap(overlap)),)
