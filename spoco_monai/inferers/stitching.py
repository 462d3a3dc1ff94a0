"""Stitching of independently labelled blocks: IoU matching in their overlap, then connected components.

Where a block's halo covers the core of an earlier block, both have labelled the same voxels: labels whose
intersection over union there exceeds ``iou_threshold`` (0.5 by default, so matches are one-to-one) are the same
object. Every block is matched on its own (:func:`match_block`, one task per block once its neighbours are stored),
and the matches of all blocks, a graph as small as the number of objects, are joined by connected components
(union-find) into global ids (:func:`global_ids`). An object crossing a seam therefore keeps one id whenever both
blocks agree on it in the overlap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from bioimage_cpp.segmentation import relabel_sequential
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..metrics.overlap import label_overlap
from .block_grid import Block, relative
from .block_store import BlockRecord, BlockStore


def match_labels_by_iou(labels_a: np.ndarray, labels_b: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """Pairs of labels that two segmentations of the same region give to (nearly) the same voxels.

    Intersection over union is measured inside the region only. With ``iou_threshold >= 0.5`` every
    label is matched at most once, so matching cannot chain distinct objects together.

    Args:
        labels_a: integer labels (ids >= 0) of the region; 0 is never matched.
        labels_b: integer labels (ids >= 0) of the same region from another segmentation, same shape.
        iou_threshold: a pair matches when its IoU is strictly above this value.

    Returns:
        ``(P, 2)`` int64 array of matched ``(label_a, label_b)`` pairs, sorted by ``label_a``.

    Raises:
        ValueError: if the shapes differ.
    """
    if labels_a.shape != labels_b.shape:
        raise ValueError(f"labels_a and labels_b must have the same shape, got {labels_a.shape} and {labels_b.shape}.")
    # the two segmentations take the roles of the overlap table's rows (gt) and columns (pred) alike
    overlap = label_overlap(labels_b, labels_a)
    index_a, index_b, iou = overlap.object_iou()
    keep = iou > iou_threshold
    return np.stack([overlap.gt_ids[index_a[keep]], overlap.pred_ids[index_b[keep]]], axis=1).astype(np.int64)


def merge_matched_nodes(num_nodes: int, pairs: np.ndarray) -> np.ndarray:
    """Union-find over matched pairs: the connected component of every node.

    Args:
        num_nodes: number of nodes, numbered ``0 .. num_nodes - 1``.
        pairs: ``(P, 2)`` integer array of matched node pairs.

    Returns:
        ``(num_nodes,)`` int64 component ids, numbered by first appearance in node order.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(num_nodes, num_nodes))
    _, components = connected_components(graph, directed=False)
    return components.astype(np.int64)


def match_block(block: Block, earlier: Sequence[Block], store: BlockStore, iou_threshold: float) -> np.ndarray:
    """The objects a block's halo shares with the cores of earlier blocks (one face-matching task).

    Only the overlaps are read from the store, so a task costs a few faces of two blocks, whatever their size.

    Args:
        block: the block, stored in ``store`` with the labels of its extent.
        earlier: the blocks with a smaller index whose core overlaps ``block``'s extent
            (see :meth:`~.block_grid.BlockGrid.overlapping_cores`), all stored.
        store: the finished blocks.
        iou_threshold: see :func:`match_labels_by_iou`.

    Returns:
        ``(P, 3)`` int64 rows ``(label in this block, index of an earlier block, label there)``.
    """
    matches = [np.zeros((0, 3), dtype=np.int64)]
    for other in earlier:
        shared = tuple(slice(max(e.start, c.start), min(e.stop, c.stop)) for e, c in zip(block.extent, other.core))
        here = store.labels(block.index)[relative(shared, block.extent)]
        there = store.labels(other.index)[relative(shared, other.extent)]
        pairs = match_labels_by_iou(np.asarray(here), np.asarray(there), iou_threshold)
        matches.append(np.column_stack([pairs[:, 0], np.full(len(pairs), other.index), pairs[:, 1]]))
    return np.concatenate(matches).astype(np.int64)


def global_ids(records: Sequence[BlockRecord], matches: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Join the matched labels of all blocks into consecutive global ids (one union-find over the match graph).

    Args:
        records: the record of every block of the grid, in block order.
        matches: per block, its rows from :func:`match_block`.

    Returns:
        per block, the lookup from its local core labels to global ids (``lookup[0] == 0``); int32, or int64
        beyond 2^31 - 1 objects. Ids are numbered by first appearance in block order.
    """
    first_node = np.cumsum([0] + [record.num_labels for record in records])
    edges = [np.zeros((0, 2), dtype=np.int64)] + [
        np.column_stack([first_node[index] + rows[:, 0] - 1, first_node[rows[:, 1]] + rows[:, 2] - 1])
        for index, rows in enumerate(matches)
    ]
    components = merge_matched_nodes(int(first_node[-1]), np.concatenate(edges))
    core_nodes = [first_node[i] + np.arange(r.num_core_labels) for i, r in enumerate(records)]
    # consecutive ids 1.. over the objects that own voxels, in order of first appearance (the component
    # numbers start at 0, which relabel_sequential would keep as background: hence the shift by one)
    final_ids = relabel_sequential(components[np.concatenate(core_nodes)] + 1)[0]
    num_objects = int(final_ids.max()) if final_ids.size else 0
    dtype = np.int32 if num_objects <= np.iinfo(np.int32).max else np.int64
    boundaries = np.cumsum([0] + [len(nodes) for nodes in core_nodes])
    return [
        np.concatenate([[0], final_ids[boundaries[i] : boundaries[i + 1]]]).astype(dtype)
        for i in range(len(records))
    ]

