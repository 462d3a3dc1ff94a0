"""Variation of information split into its over- and under-segmentation parts."""

from __future__ import annotations

import numpy as np
from monai.utils import MetricReduction

from spoco_monai.metrics.instance_metric import InstanceSegmentationMetric
from spoco_monai.metrics.overlap import LabelArray, LabelOverlap, label_overlap


def variation_of_information_from_overlap(
    overlap: LabelOverlap, ignore_background: bool = False
) -> tuple[float, float]:
    """(split, merge) of a precomputed overlap table (see :func:`variation_of_information`)."""
    keep = overlap.gt_ids[overlap.gt_index] != 0 if ignore_background else np.ones(len(overlap.counts), dtype=bool)
    counts, gt_index, pred_index = overlap.counts[keep], overlap.gt_index[keep], overlap.pred_index[keep]
    if counts.size == 0:
        return 0.0, 0.0
    p_joint = counts / counts.sum()
    p_gt = np.bincount(gt_index, weights=p_joint)[gt_index]
    p_pred = np.bincount(pred_index, weights=p_joint)[pred_index]
    split = float(np.sum(p_joint * np.log2(p_gt / p_joint)))
    merge = float(np.sum(p_joint * np.log2(p_pred / p_joint)))
    return split, merge


def variation_of_information(pred: LabelArray, gt: LabelArray, ignore_background: bool = False) -> tuple[float, float]:
    """Variation of information VI = H(pred | gt) + H(gt | pred) in bits, as its two parts (Meila, 2007).

    ``split = H(pred | gt)`` (over-segmentation: 0 when every gt segment lies within one predicted segment)
    and ``merge = H(gt | pred)`` (under-segmentation). The order is scikit-image's:
    ``skimage.metrics.variation_of_information(gt, pred)`` returns ``[split, merge]``. Like scikit-image's
    default, 0 is an ordinary segment in both images; ``ignore_background=True`` leaves out ``gt == 0`` pixels
    (scikit-image's ``ignore_labels=(0,)``, the pixels that :func:`adapted_rand_error` ignores). ``gt == -1``
    pixels are always left out. No pixel left gives (0, 0).

    Args:
        pred: predicted labels, integer np.ndarray or torch.Tensor of shape S.
        gt: ground-truth labels of shape S.
        ignore_background: leave out pixels where ``gt == 0``.

    Returns:
        ``(split, merge)``, each >= 0, lower is better.

    Raises:
        TypeError: when an input is not integer-typed.
        ValueError: when the shapes differ or ids are negative (other than -1 in ``gt``).
    """
    return variation_of_information_from_overlap(label_overlap(pred, gt), ignore_background)


class VariationOfInformationMetric(InstanceSegmentationMetric):
    """(split, merge) per sample (see :func:`variation_of_information`); the buffer has shape (N, 2).

    The default reduction "mean_batch" gives a (2,) tensor ``[mean split, mean merge]``; "mean" would average
    split and merge together (VI / 2).

    Args:
        ignore_background: leave out pixels where the ground truth is 0.
        reduction: see :class:`InstanceSegmentationMetric`.
        get_not_nans: see :class:`InstanceSegmentationMetric`.
    """

    def __init__(
        self,
        ignore_background: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN_BATCH,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(reduction=reduction, get_not_nans=get_not_nans)
        self.ignore_background = ignore_background

    def _sample_scores(self, overlap: LabelOverlap) -> tuple[float, ...]:
        return variation_of_information_from_overlap(overlap, self.ignore_background)
