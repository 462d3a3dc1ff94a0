from __future__ import annotations

import numpy as np
import pytest

from spoco_monai.inferers import BlockGrid, BlockRecord, MemoryBlockStore, match_labels_by_iou, merge_matched_nodes
from spoco_monai.inferers.stitching import global_ids, match_block


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


def test_match_large_ids_and_unsigned_labels():
    a = np.array([2**40, 2**40, 2**40, 0, 3], dtype=np.int64)
    b = np.array([5, 5, 5, 5, 2**41], dtype=np.int64)
    # 2**40 <-> 5 IoU 3/4, 3 <-> 2**41 IoU 1/1
    np.testing.assert_array_equal(match_labels_by_iou(a, b), [[3, 2**41], [2**40, 5]])
    pairs = match_labels_by_iou(np.array([[1, 1], [2, 0]], np.uint32), np.array([[4, 4], [6, 6]], np.uint16))
    assert pairs.dtype == np.int64
    np.testing.assert_array_equal(pairs, [[1, 4]])


def test_global_ids_join_matches_and_number_objects_by_first_appearance():
    records = [
        # block 0: core labels 1, 2; label 3 only in its halo
        BlockRecord(2, 3),
        # block 1: its core label 1 is block 0's 2, its halo label 4 is block 0's 1
        BlockRecord(3, 4),
        # block 2: its core label 1 is block 1's 1 (so block 0's 2), its label 2 is block 1's 3
        BlockRecord(2, 2),
    ]
    matches = [np.zeros((0, 3), np.int64), np.array([[1, 0, 2], [4, 0, 1]]), np.array([[1, 1, 1], [2, 1, 3]])]
    lookups = global_ids(records, matches)
    assert [lookup.tolist() for lookup in lookups] == [[0, 1, 2], [0, 2, 3, 4], [0, 2, 4]]
    assert all(lookup.dtype == np.int32 for lookup in lookups)


def test_global_ids_of_blocks_without_objects():
    lookups = global_ids([BlockRecord(0, 0)] * 2, [np.zeros((0, 3), np.int64)] * 2)
    assert [lookup.tolist() for lookup in lookups] == [[0], [0]]


def test_match_block_reads_the_overlap_with_earlier_cores():
    # two blocks along one axis: cores 0-5 and 5-12, extents 0-6 and 4-12, so they share voxel 4
    grid = BlockGrid((12,), (4,), 0.5, block_shape=(6,))
    first, second = grid.blocks
    assert (first.core, first.extent, second.extent) == ((slice(0, 5),), (slice(0, 6),), (slice(4, 12),))
    store = MemoryBlockStore()
    store.save(0, np.array([1, 1, 1, 1, 2, 3], np.uint32), BlockRecord(2, 3))
    # the second block's label 5 is block 0's core label 2 (voxel 4); its label 1 meets block 0's halo only
    store.save(1, np.array([5, 1, 1, 1, 1, 1, 1, 1], np.uint32), BlockRecord(1, 5))
    np.testing.assert_array_equal(match_block(second, [first], store, 0.5), [[5, 0, 2]])
    assert match_block(first, [], store, 0.5).shape == (0, 3)
