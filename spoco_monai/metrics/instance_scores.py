"""Every instance metric of one prediction against its ground truth, from a single overlap table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from spoco_monai.metrics.adapted_rand_error import adapted_rand_error_from_overlap
from spoco_monai.metrics.average_precision import average_precision_from_overlap, mean_average_precision_from_overlap
from spoco_monai.metrics.count_difference import absolute_count_difference_from_overlap
from spoco_monai.metrics.overlap import LabelArray, label_overlap
from spoco_monai.metrics.symmetric_best_dice import symmetric_best_dice_from_overlap
from spoco_monai.metrics.variation_of_information import variation_of_information_from_overlap

__all__ = ["INSTANCE_SCORE_KEYS", "instance_scores", "mean_instance_scores"]

INSTANCE_SCORE_KEYS = ("arand", "voi_split", "voi_merge", "sbd", "dic", "ap50", "map", "segments", "objects")


def instance_scores(pred: LabelArray, gt: LabelArray) -> dict[str, float]:
    """Adapted Rand error, VOI split and merge, SBD, |DiC|, AP@0.5, mAP and the object counts of one image.

    Args:
        pred: predicted instance labels (0 background), any spatial shape.
        gt: ground-truth labels of the same shape (0 background, -1 ignored).

    Returns:
        ``{key: value}`` for every key of :data:`INSTANCE_SCORE_KEYS`; ``segments`` and ``objects`` count the ids
        other than 0 (and -1) of ``pred`` and ``gt``.
    """
    overlap = label_overlap(pred, gt)
    split, merge = variation_of_information_from_overlap(overlap)
    pred_ids = torch.unique(torch.as_tensor(np.asarray(pred)))
    gt_ids = torch.unique(torch.as_tensor(np.asarray(gt)))
    return {
        "arand": adapted_rand_error_from_overlap(overlap),
        "voi_split": split,
        "voi_merge": merge,
        "sbd": symmetric_best_dice_from_overlap(overlap),
        "dic": float(absolute_count_difference_from_overlap(overlap)),
        "ap50": average_precision_from_overlap(overlap, 0.5),
        "map": mean_average_precision_from_overlap(overlap),
        "segments": int((pred_ids > 0).sum()),
        "objects": int((gt_ids > 0).sum()),
    }


def mean_instance_scores(per_image: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean over images of every :data:`INSTANCE_SCORE_KEYS` entry of :func:`instance_scores`.

    Args:
        per_image: one :func:`instance_scores` dictionary per image; further entries (e.g. a file name) are ignored.

    Returns:
        ``{key: mean}`` for every key of :data:`INSTANCE_SCORE_KEYS`, as plain floats.

    Raises:
        ValueError: ``per_image`` is empty.
    """
    if not per_image:
        raise ValueError("mean_instance_scores needs the scores of at least one image, got none.")
    return {key: float(np.mean([scores[key] for scores in per_image])) for key in INSTANCE_SCORE_KEYS}
