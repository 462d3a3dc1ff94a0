"""Average precision at IoU thresholds in the DSB2018 / StarDist sense, TP / (TP + FP + FN)."""

from __future__ import annotations

import numpy as np
from monai.utils import MetricReduction
from scipy.sparse import csr_array
from scipy.sparse.csgraph import maximum_bipartite_matching

from spoco_monai.metrics.instance_metric import InstanceSegmentationMetric
from spoco_monai.metrics.overlap import LabelArray, LabelOverlap, label_overlap

MEAN_AP_IOU_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def _check_iou_threshold(iou_threshold: float) -> None:
    if not 0.0 <= iou_threshold < 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1), got {iou_threshold}.")


def _average_precision_at(
    overlap: LabelOverlap, iou: tuple[np.ndarray, np.ndarray, np.ndarray], iou_threshold: float
) -> float:
    """AP from ``iou = overlap.object_iou()``, passed in so that several thresholds share it."""
    n_gt, n_pred = overlap.n_gt_objects, overlap.n_pred_objects
    if n_gt + n_pred == 0:
        return 1.0
    gt_index, pred_index, pair_iou = iou
    candidate = pair_iou > iou_threshold
    # the TP count of an optimal one-to-one matching is the maximum cardinality matching of the candidate
    # pairs; Hopcroft-Karp on the sparse candidate graph avoids a dense (#gt x #pred) assignment problem
    graph = csr_array(
        (np.ones(np.count_nonzero(candidate)), (gt_index[candidate], pred_index[candidate])),
        shape=(len(overlap.gt_ids), len(overlap.pred_ids)),
    )
    true_positives = int(np.count_nonzero(maximum_bipartite_matching(graph, perm_type="column") >= 0))
    return true_positives / (n_gt + n_pred - true_positives)


def average_precision_from_overlap(overlap: LabelOverlap, iou_threshold: float = 0.5) -> float:
    """Average precision of a precomputed overlap table (see :func:`average_precision`)."""
    _check_iou_threshold(iou_threshold)
    return _average_precision_at(overlap, overlap.object_iou(), iou_threshold)


def mean_average_precision_from_overlap(overlap: LabelOverlap) -> float:
    """Mean average precision of a precomputed overlap table (see :func:`mean_average_precision`)."""
    iou = overlap.object_iou()
    return float(np.mean([_average_precision_at(overlap, iou, threshold) for threshold in MEAN_AP_IOU_THRESHOLDS]))


def average_precision(pred: LabelArray, gt: LabelArray, iou_threshold: float = 0.5) -> float:
    """Average precision TP / (TP + FP + FN) at one IoU threshold (DSB2018; Schmidt et al., StarDist, 2018).

    Predicted and ground-truth objects (ids other than 0) are matched one-to-one, a pair being admissible when
    its IoU is strictly above ``iou_threshold``; TP is the size of a maximum matching, the count StarDist's
    ``linear_sum_assignment`` matching reaches (for thresholds >= 0.5 each object has at most one admissible
    partner, so the matching is unique). FP are unmatched predicted objects,
    FN unmatched ground-truth objects. IoUs use the full object sizes; ``gt == -1`` pixels are ignored.
    Both images without objects give 1; exactly one without objects gives 0.

    Args:
        pred: predicted labels, integer np.ndarray or torch.Tensor of shape S.
        gt: ground-truth labels of shape S.
        iou_threshold: in [0, 1).

    Returns:
        AP in [0, 1], higher is better.

    Raises:
        TypeError: when an input is not integer-typed.
        ValueError: when the shapes differ, ids are negative (other than -1 in ``gt``) or the threshold is
            outside [0, 1).
    """
    return average_precision_from_overlap(label_overlap(pred, gt), iou_threshold)


def mean_average_precision(pred: LabelArray, gt: LabelArray) -> float:
    """Mean of :func:`average_precision` over the IoU thresholds 0.5, 0.55, ..., 0.95.

    Args:
        pred: predicted labels, integer np.ndarray or torch.Tensor of shape S.
        gt: ground-truth labels of shape S.

    Returns:
        mAP in [0, 1], higher is better.

    Raises:
        TypeError: when an input is not integer-typed.
        ValueError: when the shapes differ or ids are negative (other than -1 in ``gt``).
    """
    return mean_average_precision_from_overlap(label_overlap(pred, gt))


class AveragePrecisionMetric(InstanceSegmentationMetric):
    """Average precision per sample at one IoU threshold (see :func:`average_precision`), averaged by ``aggregate()``.

    Args:
        iou_threshold: in [0, 1).
        reduction: see :class:`InstanceSegmentationMetric`.
        get_not_nans: see :class:`InstanceSegmentationMetric`.

    Raises:
        ValueError: when ``iou_threshold`` is outside [0, 1).
    """

    def __init__(
        self,
        iou_threshold: float = 0.5,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        _check_iou_threshold(iou_threshold)
        super().__init__(reduction=reduction, get_not_nans=get_not_nans)
        self.iou_threshold = iou_threshold

    def _sample_scores(self, overlap: LabelOverlap) -> tuple[float, ...]:
        return (average_precision_from_overlap(overlap, self.iou_threshold),)


class MeanAveragePrecisionMetric(InstanceSegmentationMetric):
    """Mean average precision per sample (see :func:`mean_average_precision`), averaged by ``aggregate()``.

    Inputs, reduction and ``get_not_nans`` as in :class:`InstanceSegmentationMetric`.
    """

    def _sample_scores(self, overlap: LabelOverlap) -> tuple[float, ...]:
        return (mean_average_precision_from_overlap(overlap),)
