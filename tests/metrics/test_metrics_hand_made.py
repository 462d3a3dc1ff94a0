"""Exact metric values on tiny hand-made label images."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import adapted_rand_error as skimage_adapted_rand_error
from skimage.metrics import variation_of_information as skimage_variation_of_information

from spoco_monai.metrics import (
    absolute_count_difference,
    adapted_rand_error,
    average_precision,
    mean_average_precision,
    symmetric_best_dice,
    variation_of_information,
)

# two ground-truth objects of 4 pixels each next to 4 background pixels
GT = np.array([[1, 1, 1, 1, 0, 0], [2, 2, 2, 2, 0, 0]])

# H(1/4, 3/4) in bits
ENTROPY_QUARTER = -(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75))

# name: (pred, gt, SBD, |DiC|, AP@0.5, mAP, ARand (error, precision, recall), VOI (split, merge))
CASES = {
    "perfect, relabeled": (
        np.array([[5, 5, 5, 5, 0, 0], [9, 9, 9, 9, 0, 0]]), GT, 1.0, 0, 1.0, 1.0, (0.0, 1.0, 1.0), (0.0, 0.0),
    ),
    # one object of 8 pixels over both: Dice 2*4/12, IoU 4/8 (not above 0.5)
    "merge of two objects": (
        np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0]]), GT, 2 / 3, 1, 0.0, 0.0, (0.4, 1.0, 3 / 7), (0.0, 2 / 3),
    ),
    "split of one object": (
        GT, np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0]]), 2 / 3, 1, 0.0, 0.0, (0.4, 3 / 7, 1.0), (2 / 3, 0.0),
    ),
    # object 2 left as background: predicted 0 is one segment, exactly covering it, so ARand sees no error
    "missed object": (
        np.array([[1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0]]), GT, 0.5, 1, 0.5, 0.5, (0.0, 1.0, 1.0), (0.0, 2 / 3),
    ),
    # an object on the gt background: ignored by ARand, and the background maps to one predicted id
    "extra object": (
        np.array([[1, 1, 1, 1, 3, 3], [2, 2, 2, 2, 3, 3]]), GT, 2 / 3, 1, 2 / 3, 2 / 3, (0.0, 1.0, 1.0), (0.0, 0.0),
    ),
    # intersection 3, union 5: IoU 0.6 (matched at 0.5 and 0.55 only), Dice 6/8
    "partial overlap": (
        np.array([[0, 1, 1, 1, 1, 0]]), np.array([[1, 1, 1, 1, 0, 0]]), 0.75, 0, 1.0, 0.2, (1 / 3, 0.5, 1.0),
        (4 / 6 * ENTROPY_QUARTER + 2 / 6, 2 / 6 + 4 / 6 * ENTROPY_QUARTER),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_exact_values(name):
    pred, gt, sbd, dic, ap, mean_ap, arand, voi = CASES[name]
    assert symmetric_best_dice(pred, gt) == pytest.approx(sbd, abs=1e-12)
    assert absolute_count_difference(pred, gt) == dic
    assert average_precision(pred, gt) == pytest.approx(ap, abs=1e-12)
    assert mean_average_precision(pred, gt) == pytest.approx(mean_ap, abs=1e-12)
    assert adapted_rand_error(pred, gt, return_precision_recall=True) == pytest.approx(arand, abs=1e-12)
    assert adapted_rand_error(pred, gt) == pytest.approx(arand[0], abs=1e-12)
    assert variation_of_information(pred, gt) == pytest.approx(voi, abs=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_hand_made_cases_equal_skimage(name):
    pred, gt, *_ = CASES[name]
    np.testing.assert_allclose(adapted_rand_error(pred, gt, True), skimage_adapted_rand_error(gt, pred), atol=1e-12)
    np.testing.assert_allclose(
        variation_of_information(pred, gt), skimage_variation_of_information(gt, pred), atol=1e-12
    )


def test_partial_overlap_voi_by_hand():
    # pixels (gt, pred): (1,0), (1,1) x3, (0,1), (0,0); H(pred|gt) = 4/6 H(1/4, 3/4) + 2/6 * 1
    pred, gt = np.array([[0, 1, 1, 1, 1, 0]]), np.array([[1, 1, 1, 1, 0, 0]])
    split, merge = variation_of_information(pred, gt)
    assert split == pytest.approx(4 / 6 * ENTROPY_QUARTER + 2 / 6, abs=1e-12)
    # pred 0 = {gt 1, gt 0}, pred 1 = {gt 1 x3, gt 0}: H(gt|pred) = 2/6 * 1 + 4/6 H(1/4, 3/4)
    assert merge == pytest.approx(2 / 6 + 4 / 6 * ENTROPY_QUARTER, abs=1e-12)


@pytest.mark.parametrize(
    "threshold, expected", [(0.0, 1 / 2), (0.4, 1 / 2), (0.5, 0.0), (0.59, 0.0)]
)
def test_average_precision_threshold_is_strict(threshold, expected):
    # one object of 8 pixels over two gt objects of 4: IoU exactly 0.5 with each; at most one match
    pred = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0]])
    assert average_precision(pred, GT, iou_threshold=threshold) == pytest.approx(expected, abs=1e-12)


def test_average_precision_matching_is_optimal_below_one_half():
    # IoU(A, X) = 4/8, IoU(A, Y) = 2/6, IoU(B, X) = 2/8: matching the best pair A-X first would leave B and Y
    # unmatched (AP 1/3); the maximum one-to-one matching A-Y, B-X matches everything
    gt = np.array([1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0])
    pred = np.array([4, 4, 3, 3, 3, 3, 3, 3, 0, 0, 0, 0])
    assert average_precision(pred, gt, iou_threshold=0.2) == 1.0
    assert average_precision(pred, gt, iou_threshold=0.3) == pytest.approx(1 / 3)
    assert average_precision(pred, gt, iou_threshold=0.5) == 0.0


def test_ignore_label_pixels_are_left_out():
    pred = np.array([[1, 1, 1, 1, 7, 7], [2, 2, 3, 3, 3, 0]])
    gt = np.array([[1, 1, 1, 1, -1, -1], [2, 2, 2, -1, -1, 0]])
    keep = gt != -1
    for metric in (symmetric_best_dice, absolute_count_difference, adapted_rand_error, average_precision,
                   mean_average_precision, variation_of_information):
        assert metric(pred, gt) == pytest.approx(metric(pred[keep], gt[keep]), abs=1e-12)
    # object 7 lies entirely in the ignored region, object 3 keeps its one visible pixel
    assert absolute_count_difference(pred, gt) == 1


EMPTY = np.zeros((2, 6), dtype=np.int64)


def test_both_empty_is_perfect():
    assert symmetric_best_dice(EMPTY, EMPTY) == 1.0
    assert absolute_count_difference(EMPTY, EMPTY) == 0
    assert average_precision(EMPTY, EMPTY) == 1.0
    assert mean_average_precision(EMPTY, EMPTY) == 1.0
    assert adapted_rand_error(EMPTY, EMPTY, return_precision_recall=True) == (0.0, 1.0, 1.0)
    assert variation_of_information(EMPTY, EMPTY) == (0.0, 0.0)


def test_empty_prediction():
    assert symmetric_best_dice(EMPTY, GT) == 0.0
    assert absolute_count_difference(EMPTY, GT) == 2
    assert average_precision(EMPTY, GT) == 0.0
    assert mean_average_precision(EMPTY, GT) == 0.0
    # all foreground in one predicted segment (0): a full merge, as skimage computes it
    np.testing.assert_allclose(adapted_rand_error(EMPTY, GT, True), skimage_adapted_rand_error(GT, EMPTY))
    assert adapted_rand_error(EMPTY, GT) == pytest.approx(0.4)


def test_empty_ground_truth(recwarn):
    pred = np.array([[1, 1, 2, 2, 0, 0], [1, 1, 2, 2, 0, 0]])
    assert symmetric_best_dice(pred, EMPTY) == 0.0
    assert absolute_count_difference(pred, EMPTY) == 2
    assert average_precision(pred, EMPTY) == 0.0
    assert mean_average_precision(pred, EMPTY) == 0.0
    # every pixel is ignored (skimage returns NaN from 0 / 0): no pair can be wrong
    assert adapted_rand_error(pred, EMPTY, return_precision_recall=True) == (0.0, 1.0, 1.0)
    assert variation_of_information(pred, EMPTY, ignore_background=True) == (0.0, 0.0)
    assert not [w for w in recwarn.list if issubclass(w.category, RuntimeWarning)]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_single_pixel_objects_have_no_pairs():
    # every gt segment is one pixel: skimage gives precision 0 / 0; the merged prediction has recall 0
    gt, pred = np.array([1, 2, 3]), np.array([1, 1, 1])
    error, precision, recall = adapted_rand_error(pred, gt, return_precision_recall=True)
    sk_error, _, sk_recall = skimage_adapted_rand_error(gt, pred)
    assert (error, precision, recall) == (sk_error, 1.0, sk_recall) == (1.0, 1.0, 0.0)


def test_zero_size_inputs():
    empty = np.zeros((0, 4), dtype=np.int32)
    assert symmetric_best_dice(empty, empty) == 1.0
    assert average_precision(empty, empty) == 1.0
    assert adapted_rand_error(empty, empty) == 0.0
    assert variation_of_information(empty, empty) == (0.0, 0.0)
