"""instance_scores and annotated_object_iou on hand-worked label images."""

from __future__ import annotations

import numpy as np
import pytest

from spoco_monai.metrics import INSTANCE_SCORE_KEYS, annotated_object_iou, instance_scores, mean_instance_scores


def test_instance_scores_of_a_hand_made_pair():
    # contingency (pred, gt): (1, 1) 2, (2, 1) 1, (2, 2) 1; sum n^2 = 6, gt rows 3, 1 (10), pred columns 2, 2 (8)
    # precision (6 - 4) / (8 - 4) = 1/2, recall (6 - 4) / (10 - 4) = 1/3, F = 2/5: adapted Rand error 3/5
    scores = instance_scores(np.array([[1, 1, 2, 2]]), np.array([[1, 1, 1, 2]]))
    assert set(scores) == set(INSTANCE_SCORE_KEYS)
    assert scores["arand"] == pytest.approx(0.6)
    # H(gt | pred) = 1/2 * H(1/2, 1/2) = 0.5 bit (merge); H(pred | gt) = 3/4 * H(2/3, 1/3) (split)
    assert scores["voi_merge"] == pytest.approx(0.5)
    assert scores["voi_split"] == pytest.approx(0.75 * (-(2 / 3) * np.log2(2 / 3) - (1 / 3) * np.log2(1 / 3)))
    # best Dice: gt 1 -> pred 1: 2*2/(3+2) = 0.8; gt 2 -> pred 2: 2/3; pred 1 -> 0.8, pred 2 -> 2/3: SBD 11/15
    assert scores["sbd"] == pytest.approx(11 / 15)
    assert scores["dic"] == 0.0 and scores["segments"] == 2 and scores["objects"] == 2


def test_mean_instance_scores_averages_every_key_over_images_and_ignores_other_entries():
    first = {"name": "a.tif", **instance_scores(np.array([[1, 1, 2, 2]]), np.array([[1, 1, 1, 2]]))}
    second = {"name": "b.tif", **instance_scores(np.array([[1, 1, 0, 0]]), np.array([[1, 1, 2, 2]]))}
    means = mean_instance_scores([first, second])
    assert list(means) == list(INSTANCE_SCORE_KEYS)
    # the second image misses one of its two objects: |DiC| 1, one segment
    assert means["dic"] == 0.5 and means["segments"] == 1.5 and means["objects"] == 2.0
    assert means["sbd"] == pytest.approx((first["sbd"] + second["sbd"]) / 2)
    assert mean_instance_scores([first]) == {key: float(first[key]) for key in INSTANCE_SCORE_KEYS}


def test_mean_instance_scores_of_no_image_is_an_error():
    with pytest.raises(ValueError, match="at least one image"):
        mean_instance_scores([])


def test_annotated_object_iou_scores_only_the_annotated_objects_against_whole_segments():
    # object 1 (3 voxels) lies in segment 5 (4 voxels): IoU 3/4; object 2 is split in halves: 1/2
    pred = np.array([5, 5, 5, 5, 6, 7, 0])
    sparse = np.array([1, 1, 1, 0, 2, 2, -1])
    assert annotated_object_iou(pred, sparse) == pytest.approx(0.625)


def test_annotated_object_iou_without_annotations_is_zero():
    assert annotated_object_iou(np.array([1, 2]), np.array([0, 0])) == 0.0
