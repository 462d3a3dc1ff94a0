"""Metrics equal independent references on random label images: scikit-image and direct per-object loops."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from skimage.metrics import adapted_rand_error as skimage_adapted_rand_error
from skimage.metrics import variation_of_information as skimage_variation_of_information

from spoco_monai.metrics import (
    MEAN_AP_IOU_THRESHOLDS,
    adapted_rand_error,
    average_precision,
    mean_average_precision,
    symmetric_best_dice,
    variation_of_information,
)

SEEDS = range(5)


def voronoi_labels(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Each voxel takes the id of its nearest point; every third cell becomes background 0."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    nearest = np.argmin(((grid[..., None, :] - points) ** 2).sum(-1), axis=-1)
    ids = 10 * np.arange(1, len(points) + 1)
    ids[::3] = 0
    return ids[nearest]


def random_pair(seed: int, shape: tuple[int, ...] = (8, 24, 24), n_objects: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth and a prediction from jittered Voronoi points: compact objects with IoUs spread over (0, 1]."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, size=(n_objects, len(shape))) * np.array(shape)
    jitter = rng.normal(0, 1.5, size=points.shape) * (rng.uniform(size=(n_objects, 1)) < 0.7)
    pred = voronoi_labels(points + jitter, shape)
    # one predicted object merged into its neighbour id and ids shifted: counts and ids differ from gt
    pred[pred == 20] = 50
    return pred + 3 * (pred > 0), voronoi_labels(points, shape)


def reference_best_dice(a: np.ndarray, b: np.ndarray) -> float:
    scores = [max(2 * np.sum((a == i) & (b == j)) / (np.sum(a == i) + np.sum(b == j)) for j in np.unique(b[b != 0]))
              for i in np.unique(a[a != 0])]
    return float(np.mean(scores))


def reference_average_precision(pred: np.ndarray, gt: np.ndarray, threshold: float) -> float:
    gt_ids, pred_ids = np.unique(gt[gt != 0]), np.unique(pred[pred != 0])
    iou = np.array([[np.sum((gt == g) & (pred == p)) / np.sum((gt == g) | (pred == p)) for p in pred_ids]
                    for g in gt_ids])
    # StarDist's assignment: maximise the number of pairs above the threshold, IoU as tie-breaker
    rows, cols = linear_sum_assignment(-(iou > threshold).astype(float) - iou / (2 * min(iou.shape)))
    tp = np.count_nonzero(iou[rows, cols] > threshold)
    return tp / (len(gt_ids) + len(pred_ids) - tp)


@pytest.mark.parametrize("seed", SEEDS)
def test_adapted_rand_error_equals_skimage(seed):
    pred, gt = random_pair(seed)
    expected = skimage_adapted_rand_error(image_true=gt, image_test=pred)
    np.testing.assert_allclose(adapted_rand_error(pred, gt, return_precision_recall=True), expected, rtol=1e-12)
    assert adapted_rand_error(pred, gt) == pytest.approx(expected[0], rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_variation_of_information_equals_skimage(seed):
    pred, gt = random_pair(seed)
    np.testing.assert_allclose(variation_of_information(pred, gt), skimage_variation_of_information(gt, pred),
                               rtol=1e-10)
    np.testing.assert_allclose(
        variation_of_information(pred, gt, ignore_background=True),
        skimage_variation_of_information(gt, pred, ignore_labels=(0,)),
        rtol=1e-10,
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_symmetric_best_dice_equals_direct_definition(seed):
    pred, gt = random_pair(seed)
    expected = min(reference_best_dice(gt, pred), reference_best_dice(pred, gt))
    assert symmetric_best_dice(pred, gt) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", [0.05, 0.2, 0.35, 0.5, 0.7, 0.9])
def test_average_precision_equals_linear_sum_assignment(seed, threshold):
    pred, gt = random_pair(seed)
    assert average_precision(pred, gt, threshold) == pytest.approx(reference_average_precision(pred, gt, threshold))


@pytest.mark.parametrize("seed", SEEDS)
def test_mean_average_precision_is_mean_over_thresholds(seed):
    pred, gt = random_pair(seed)
    expected = np.mean([reference_average_precision(pred, gt, t) for t in MEAN_AP_IOU_THRESHOLDS])
    assert mean_average_precision(pred, gt) == pytest.approx(expected, rel=1e-12)
    assert MEAN_AP_IOU_THRESHOLDS == tuple(np.round(np.arange(0.5, 0.96, 0.05), 2))


@pytest.mark.parametrize("seed", SEEDS)
def test_scattered_labels_equal_skimage(seed):
    # salt-and-pepper labels: many small cells in the table, predicted 0 spread over every gt object
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 8, size=(20, 30)).astype(np.uint16)
    pred = rng.integers(0, 11, size=(20, 30)).astype(np.uint8)
    np.testing.assert_allclose(adapted_rand_error(pred, gt, True), skimage_adapted_rand_error(gt, pred), rtol=1e-12)
    np.testing.assert_allclose(variation_of_information(pred, gt), skimage_variation_of_information(gt, pred),
                               rtol=1e-10)
