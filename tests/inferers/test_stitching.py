from __future__ import annotations

import numpy as np
import pytest

from spoco_monai.inferers import match_labels_by_iou, merge_matched_nodes


def test_match_exact_pairs():
    a = np.array([[1, 1, 1, 2], [1, 1, 2, 2], [0, 0, 3, 3]])
    b = np.array([[7, 7, 7, 9], [7, 7, 9, 9], [5, 5, 5, 5]])
    # 1<->7 IoU 5/5, 2<->9 IoU 3/3, 3<->5 IoU 2/4 (not above 0.5), 0 never matched
    np.testing.assert_array_equal(match_labels_by_iou(a, b), [[1, 7], [2, 9]])
    np.testing.assert_array_equal(match_labels_by_iou(a, b, iou_threshold=0.49), [[1, 7], [2, 9], [3, 5]])


def test_match_is_symmetric_and_ignores_partial_overlaps():
    a = np.array([1, 1, 1, 1, 2, 2])
    b = np.array([4, 4, 6, 6, 6, 6])
    assert match_labels_by_iou(a, b).size == 0  # IoU 2/4 and 2/6 and 2/4
    np.testing.assert_array_equal(match_labels_by_iou(b, a, 0.3), match_labels_by_iou(a, b, 0.3)[:, ::-1])


def test_match_empty_and_background_only():
    assert match_labels_by_iou(np.zeros((0, 3), int), np.zeros((0, 3), int)).shape == (0, 2)
    assert match_labels_by_iou(np.zeros((4, 4), int), np.zeros((4, 4), int)).shape == (0, 2)


def test_match_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        match_labels_by_iou(np.zeros((2, 3), int), np.zeros((3, 2), int))


def test_merge_components_in_node_order():
    components = merge_matched_nodes(6, np.array([[4, 1], [3, 5], [5, 1]]))
    np.testing.assert_array_equal(components, [0, 1, 2, 1, 1, 1])
    np.testing.assert_array_equal(merge_matched_nodes(3, np.zeros((0, 2))), [0, 1, 2])
