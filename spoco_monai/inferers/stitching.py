"""Stitching of independently labelled blocks: IoU matching in their overlap, then connected components."""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def match_labels_by_iou(labels_a: np.ndarray, labels_b: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """Pairs of labels that two segmentations of the same region give to (nearly) the same voxels.

    Intersection over union is measured inside the region only. With ``iou_threshold >= 0.5`` every
    label is matched at most once, so matching cannot chain distinct objects together.

    Args:
        labels_a: integer labels of the region; 0 is never matched.
        labels_b: integer labels of the same region from another segmentation, same shape.
        iou_threshold: a pair matches when its IoU is strictly above this value.

    Returns:
        ``(P, 2)`` int64 array of matched ``(label_a, label_b)`` pairs, sorted by ``label_a``.

    Raises:
        ValueError: if the shapes differ.
    """
    if labels_a.shape != labels_b.shape:
        raise ValueError(f"labels_a and labels_b must have the same shape, got {labels_a.shape} and {labels_b.shape}.")
    ids_a, index_a = np.unique(labels_a, return_inverse=True)
    ids_b, index_b = np.unique(labels_b, return_inverse=True)
    index_a, index_b = index_a.ravel(), index_b.ravel()
    pair_keys, intersection = np.unique(index_a * len(ids_b) + index_b, return_counts=True)
    pair_a, pair_b = np.divmod(pair_keys, len(ids_b))
    size_a = np.bincount(index_a, minlength=len(ids_a))
    size_b = np.bincount(index_b, minlength=len(ids_b))
    iou = intersection / (size_a[pair_a] + size_b[pair_b] - intersection)
    keep = (iou > iou_threshold) & (ids_a[pair_a] != 0) & (ids_b[pair_b] != 0)
    return np.stack([ids_a[pair_a[keep]], ids_b[pair_b[keep]]], axis=1).astype(np.int64)


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
