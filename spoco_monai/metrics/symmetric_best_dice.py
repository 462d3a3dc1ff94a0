"""Symmetric best Dice (SBD), the CVPPP leaf-segmentation score."""

from __future__ import annotations

import numpy as np

from spoco_monai.metrics.instance_metric import InstanceSegmentationMetric
from spoco_monai.metrics.overlap import LabelArray, LabelOverlap, label_overlap


def _mean_best_dice(best_dice_per_id: np.ndarray, ids: np.ndarray) -> float:
    return float(best_dice_per_id[ids != 0].mean())


def symmetric_best_dice_from_overlap(overlap: LabelOverlap) -> float:
    """Symmetric best Dice of a precomputed overlap table (see :func:`symmetric_best_dice`)."""
    n_gt, n_pred = overlap.n_gt_objects, overlap.n_pred_objects
    if n_gt == 0 or n_pred == 0:
        # both empty: nothing to find and nothing found; one empty: every object of the other side scores 0
        return float(n_gt == n_pred)
    gt_index, pred_index, counts = overlap.object_pairs()
    dice = 2.0 * counts / (overlap.gt_sizes[gt_index] + overlap.pred_sizes[pred_index])
    best_for_gt = np.zeros(len(overlap.gt_ids))
    np.maximum.at(best_for_gt, gt_index, dice)
    best_for_pred = np.zeros(len(overlap.pred_ids))
    np.maximum.at(best_for_pred, pred_index, dice)
    return min(_mean_best_dice(best_for_gt, overlap.gt_ids), _mean_best_dice(best_for_pred, overlap.pred_ids))


def symmetric_best_dice(pred: LabelArray, gt: LabelArray) -> float:
    """Symmetric best Dice (Scharr et al., "Leaf segmentation in plant phenotyping", MVA 2016).

    ``BD(A, B)`` is the mean over the objects of ``A`` of their best Dice with any object of ``B``;
    ``SBD = min(BD(gt, pred), BD(pred, gt))``. Background (0) is not an object and ``gt == -1`` pixels are ignored.
    Both images without objects give 1; exactly one without objects gives 0.

    Args:
        pred: predicted labels, integer np.ndarray or torch.Tensor of shape S.
        gt: ground-truth labels of shape S.

    Returns:
        SBD in [0, 1], higher is better.

    Raises:
        TypeError: when an input is not integer-typed.
        ValueError: when the shapes differ or ids are negative (other than -1 in ``gt``).
    """
    return symmetric_best_dice_from_overlap(label_overlap(pred, gt))


class SymmetricBestDiceMetric(InstanceSegmentationMetric):
    """Symmetric best Dice per sample (see :func:`symmetric_best_dice`), averaged by ``aggregate()``.

    Inputs, reduction and ``get_not_nans`` as in :class:`InstanceSegmentationMetric`.
    """

    def _sample_scores(self, overlap: LabelOverlap) -> tuple[float, ...]:
        return (symmetric_best_dice_from_overlap(overlap),)
