"""Input handling of the metric functions: dtypes, id values, invariances, errors; and the overlap table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spoco_monai.metrics import (
    absolute_count_difference,
    adapted_rand_error,
    average_precision,
    label_overlap,
    mean_average_precision,
    symmetric_best_dice,
    variation_of_information,
)

METRICS = (
    symmetric_best_dice,
    absolute_count_difference,
    adapted_rand_error,
    variation_of_information,
    average_precision,
    mean_average_precision,
)


def example_pair() -> tuple[np.ndarray, np.ndarray]:
    """A 3D pair with a split, a merge, a partial overlap, a missed and an extra object."""
    gt = np.zeros((2, 6, 8), dtype=np.int64)
    gt[:, :3, :4], gt[:, :3, 4:], gt[:, 3:, :3], gt[:, 3:, 5:] = 1, 2, 3, 4
    pred = np.zeros_like(gt)
    pred[:, :3, :2], pred[:, :3, 2:4] = 1, 2  # gt 1 split
    pred[:, :3, 4:], pred[0, 3:, 5:] = 3, 3  # gt 2 and half of gt 4 merged
    pred[:, 4:, :3] = 4  # gt 3 partially covered; its first row missed
    pred[:, 3:, 3:5] = 5  # an extra object on the background
    return pred, gt


def all_scores(pred, gt) -> np.ndarray:
    """Every metric's value(s) in one flat float array."""
    return np.hstack([metric(pred, gt) for metric in METRICS]).astype(float)


def test_label_overlap_table():
    pred = np.array([[0, 4, 4], [9, 9, 0]])
    gt = np.array([[1, 1, 1], [0, 5, 5]])
    overlap = label_overlap(pred, gt)
    np.testing.assert_array_equal(overlap.gt_ids, [0, 1, 5])
    np.testing.assert_array_equal(overlap.pred_ids, [0, 4, 9])
    np.testing.assert_array_equal(overlap.gt_sizes, [1, 3, 2])
    np.testing.assert_array_equal(overlap.pred_sizes, [2, 2, 2])
    cells = {(int(overlap.gt_ids[g]), int(overlap.pred_ids[p])): c
             for g, p, c in zip(overlap.gt_index, overlap.pred_index, overlap.counts)}
    assert cells == {(0, 9): 1, (1, 0): 1, (1, 4): 2, (5, 0): 1, (5, 9): 1}
    assert (overlap.n_gt_objects, overlap.n_pred_objects) == (2, 2)


@pytest.mark.parametrize(
    "pred_dtype, gt_dtype",
    [(np.uint8, np.uint16), (np.int16, np.int32), (np.uint32, np.int64), (np.uint64, np.int8)],
)
def test_integer_dtypes_give_the_same_scores(pred_dtype, gt_dtype):
    pred, gt = example_pair()
    np.testing.assert_array_equal(all_scores(pred.astype(pred_dtype), gt.astype(gt_dtype)), all_scores(pred, gt))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_torch_tensors_give_the_same_scores(dtype):
    pred, gt = example_pair()
    tensors = torch.from_numpy(pred).to(dtype), torch.from_numpy(gt).to(dtype)
    np.testing.assert_array_equal(all_scores(*tensors), all_scores(pred, gt))


def test_read_only_arrays(recwarn):
    pred, gt = example_pair()
    expected = all_scores(pred, gt)
    pred.setflags(write=False)
    gt.setflags(write=False)
    np.testing.assert_array_equal(all_scores(pred, gt), expected)
    assert not recwarn.list


def test_relabeling_to_large_non_consecutive_int64_ids():
    # ids around 1e12 on both sides exceed a joint int64 code of (gt, pred), so ranks are coded instead
    pred, gt = example_pair()
    rng = np.random.default_rng(0)
    pred_map = np.concatenate([[0], rng.choice(10**12, size=pred.max(), replace=False) + 10**12])
    gt_map = np.concatenate([[0], rng.choice(10**13, size=gt.max(), replace=False) + 3])
    np.testing.assert_allclose(all_scores(pred_map[pred], gt_map[gt]), all_scores(pred, gt), rtol=0, atol=1e-12)


def test_invariant_to_permuting_ids():
    pred, gt = example_pair()
    permutation = np.concatenate([[0], np.random.default_rng(1).permutation(np.arange(1, 6)) * 7])
    np.testing.assert_allclose(all_scores(permutation[pred], gt), all_scores(pred, gt), rtol=0, atol=1e-12)
    np.testing.assert_allclose(all_scores(pred, permutation[gt]), all_scores(pred, gt), rtol=0, atol=1e-12)


def test_symmetric_metrics_and_swapped_voi():
    pred, gt = example_pair()
    for metric in (symmetric_best_dice, absolute_count_difference, average_precision, mean_average_precision):
        assert metric(pred, gt) == pytest.approx(metric(gt, pred), abs=1e-12)
    split, merge = variation_of_information(pred, gt)
    assert variation_of_information(gt, pred) == pytest.approx((merge, split), abs=1e-12)
    assert split > 0 and merge > 0


def test_spatial_layout_does_not_matter():
    pred, gt = example_pair()
    np.testing.assert_array_equal(all_scores(pred.reshape(-1), gt.reshape(-1)), all_scores(pred, gt))


def test_example_pair_values():
    pred, gt = example_pair()
    assert absolute_count_difference(pred, gt) == 1
    # best Dice of the predicted objects 1..5: 2/3, 2/3, 48/57 (gt 2), 24/30 (gt 3), 0 (extra); the gt side is higher
    assert symmetric_best_dice(pred, gt) == pytest.approx((4 / 3 + 48 / 57 + 0.8) / 5, abs=1e-12)
    # IoU > 0.5 only for (gt 2, pred 3) = 24/33 and (gt 3, pred 4) = 12/18; gt 1 with pred 1 is exactly 0.5
    assert average_precision(pred, gt) == pytest.approx(2 / 7, abs=1e-12)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(
    "pred, gt",
    [
        (np.zeros((2, 2)), np.zeros((2, 2), dtype=int)),
        (np.zeros((2, 2), dtype=int), torch.zeros(2, 2)),
        (np.zeros((2, 2), dtype=bool), np.zeros((2, 2), dtype=int)),
        ([[0, 1]], np.zeros((1, 2), dtype=int)),
    ],
)
def test_non_integer_input_raises_type_error(metric, pred, gt):
    with pytest.raises(TypeError, match="integer"):
        metric(pred, gt)


@pytest.mark.parametrize("metric", METRICS)
def test_shape_mismatch_names_both_shapes(metric):
    with pytest.raises(ValueError, match=r"pred \(2, 3\) and gt \(3, 2\)"):
        metric(np.zeros((2, 3), dtype=int), np.zeros((3, 2), dtype=int))


def test_invalid_ids_raise_value_error():
    labels = np.array([[1, 2], [0, 0]])
    with pytest.raises(ValueError, match="pred ids must be >= 0, got a minimum id of -1"):
        symmetric_best_dice(np.minimum(labels, 1) - 1, labels)
    with pytest.raises(ValueError, match="gt ids must be >= 0 or -1"):
        symmetric_best_dice(labels, -labels)
    with pytest.raises(ValueError, match="fit into int64"):
        symmetric_best_dice(np.array([2**63], dtype=np.uint64), np.array([1]))


@pytest.mark.parametrize("threshold", [-0.1, 1.0, 1.5])
def test_invalid_iou_threshold(threshold):
    labels = np.array([[1, 2], [0, 0]])
    with pytest.raises(ValueError, match=r"iou_threshold must be in \[0, 1\)"):
        average_precision(labels, labels, iou_threshold=threshold)
