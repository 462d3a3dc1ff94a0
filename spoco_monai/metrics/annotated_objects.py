"""Scores from sparse annotations: how well the annotated objects are found, each as one segment of its own.

Only the annotated objects (ids > 0 of the sparse labels) are scored, but against whole predicted segments, so a
segment that splits an object or merges it with unlabeled neighbours lowers the score: sparse labels can still rank
segmentations (e.g. to choose a clustering's scale) without any dense ground truth.
"""

from __future__ import annotations

import numpy as np

from spoco_monai.metrics.overlap import LabelArray, label_overlap

__all__ = ["annotated_object_iou", "annotated_rand_error"]


def annotated_object_iou(pred: LabelArray, sparse_gt: LabelArray) -> float:
    """Mean over the annotated objects of their best intersection over union with one predicted segment.

    Args:
        pred: predicted instance labels (0 background).
        sparse_gt: labels of the same shape: id > 0 an annotated object, 0 unlabeled, -1 ignored.

    Returns:
        the mean best IoU in [0, 1]; 0.0 when no object is annotated.
    """
    overlap = label_overlap(pred, sparse_gt)
    gt_index, _, iou = overlap.object_iou()
    annotated = np.flatnonzero(overlap.gt_ids > 0)
    if annotated.size == 0:
        return 0.0
    best = np.zeros(overlap.gt_ids.shape[0])
    np.maximum.at(best, gt_index, iou)
    return float(best[annotated].mean())


def annotated_rand_error(pred: LabelArray, sparse_gt: LabelArray) -> float:
    """1 - the Rand F-score of the pairs of voxels with at least one voxel in an annotated object.

    With ``n_ij`` the voxels of annotated object ``i`` in segment ``j`` and ``b_j`` the size of segment ``j``
    (all its voxels, annotated or not):

    - recall ``R = sum n_ij^2 / sum_i (sum_j n_ij)^2``: two voxels of one annotated object share a segment
      (splits lower it);
    - precision ``P = sum n_ij^2 / sum n_ij b_j``: a voxel sharing a segment with an annotated voxel belongs to its
      object (merges with any neighbour, annotated or not, lower it);

    and the error is ``1 - 2 P R / (P + R)``, the adapted Rand error's form on the annotated objects' pairs. Unlike
    the IoU of :func:`annotated_object_iou` it weighs objects by their size squared, as the adapted Rand error does.

    Args:
        pred: predicted instance labels (0 background, counted as one segment).
        sparse_gt: labels of the same shape: id > 0 an annotated object, 0 unlabeled, -1 ignored.

    Returns:
        the error in [0, 1]; 1.0 when no object is annotated.
    """
    overlap = label_overlap(pred, sparse_gt)
    rows = overlap.gt_ids[overlap.gt_index] > 0
    counts = overlap.counts[rows]
    if counts.size == 0:
        return 1.0
    same = float(np.sum(counts**2))
    object_sizes = np.bincount(overlap.gt_index[rows], weights=counts)
    recall = same / float(np.sum(object_sizes**2))
    precision = same / float(np.sum(counts * overlap.pred_sizes[overlap.pred_index[rows]]))
    return 1.0 - 2.0 * precision * recall / (precision + recall)
