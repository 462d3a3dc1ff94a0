from __future__ import annotations

import numpy as np

from spoco_monai.clustering import merge_small_segments

OFFSETS = [(-1, 0), (0, -1)]


def _column_affinities(n_rows: int, column_links: list[float]) -> np.ndarray:
    """Attractive affinities of a grid: 1 along columns, ``column_links[j]`` between columns j and j+1."""
    affinities = np.ones((2, n_rows, len(column_links) + 1), dtype=np.float32)
    affinities[0, 0] = 0.0
    affinities[1][:, 0] = 0.0
    affinities[1][:, 1:] = column_links
    return affinities


def test_small_segment_joins_the_neighbour_with_the_highest_mean_affinity():
    labels = np.array([[1, 1, 2, 3, 3], [1, 1, 2, 3, 3]])
    merged_left = merge_small_segments(labels, _column_affinities(2, [1, 0.9, 0.2, 1]), OFFSETS, min_size=3)
    np.testing.assert_array_equal(merged_left, [[1, 1, 1, 2, 2], [1, 1, 1, 2, 2]])
    assert merged_left.dtype == np.int64
    merged_right = merge_small_segments(labels, _column_affinities(2, [1, 0.2, 0.9, 1]), OFFSETS, min_size=3)
    np.testing.assert_array_equal(merged_right, [[1, 1, 2, 2, 2], [1, 1, 2, 2, 2]])


def test_chain_of_small_segments_merges_until_large_enough():
    labels = np.array([[1, 1, 1, 2, 3]])
    # 2 and 3 are single pixels that prefer each other; the pair is still below 3 and then joins 1
    merged = merge_small_segments(labels, _column_affinities(1, [1, 1, 0.5, 0.9]), OFFSETS, min_size=3)
    np.testing.assert_array_equal(merged, np.ones_like(labels))


def test_isolated_small_segment_is_zeroed_and_background_kept():
    labels = np.array([[1, 0, 2, 2, 2]])
    merged = merge_small_segments(labels, np.ones((2, 1, 5), np.float32), OFFSETS, min_size=2)
    np.testing.assert_array_equal(merged, [[0, 0, 1, 1, 1]])


def test_no_small_segments_only_relabels():
    labels = np.array([[5, 5, 9, 9]])
    merged = merge_small_segments(labels, np.ones((2, 1, 4), np.float32), OFFSETS, min_size=2)
    np.testing.assert_array_equal(merged, [[1, 1, 2, 2]])
