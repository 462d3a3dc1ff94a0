"""Size filter for segmentations: small segments merge into the neighbour they are most attracted to."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from bioimage_cpp.graph import region_adjacency_graph
from bioimage_cpp.graph.features import affinity_features
from bioimage_cpp.segmentation import relabel_sequential
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def merge_small_segments(
    labels: np.ndarray, affinities: np.ndarray, offsets: Sequence[Sequence[int]], min_size: int
) -> np.ndarray:
    """Merge every segment smaller than ``min_size`` pixels into its best neighbour.

    The best neighbour of a segment is the touching segment (label 0 excluded) with the highest mean
    affinity over the affinity links between the two. A small segment without any such neighbour (e.g.
    enclosed by masked-out pixels) is set to 0. Merging repeats until no segment is smaller than
    ``min_size``: two small neighbours that choose each other merge first and, if still too small, merge
    on in the next round.

    Args:
        labels: int64 ``S`` labels, 0 = background (kept as is).
        affinities: ``(C, *S)`` float32 affinities (1 = same object), typically the attractive channels.
        offsets: the ``C`` offsets of the affinity channels.
        min_size: minimum segment size in pixels.

    Returns:
        int64 ``S`` labels, consecutive from 1, with no segment smaller than ``min_size``.
    """
    labels = relabel_sequential(np.ascontiguousarray(labels, dtype=np.int64))[0]
    affinities = np.ascontiguousarray(affinities, dtype=np.float32)
    offsets = [list(offset) for offset in offsets]
    while True:
        sizes = np.bincount(labels.reshape(-1))
        small = sizes < min_size
        small[0] = False
        if not small.any():
            return labels
        mapping = _merge_map(labels, affinities, offsets, small)
        labels = relabel_sequential(mapping[labels])[0]


def _merge_map(labels: np.ndarray, affinities: np.ndarray, offsets: list, small: np.ndarray) -> np.ndarray:
    """Label map after one round: small segments joined to their best neighbour, isolated ones to 0."""
    unsigned = labels.astype(np.uint64)
    rag = region_adjacency_graph(unsigned)
    edges = rag.uv_ids().astype(np.int64)
    mean_affinity = affinity_features(rag, unsigned, affinities, offsets)[:, 0]
    foreground = (edges != 0).all(axis=1)
    edges, mean_affinity = edges[foreground], mean_affinity[foreground]
    source = np.concatenate([edges[:, 0], edges[:, 1]])
    target = np.concatenate([edges[:, 1], edges[:, 0]])
    weight = np.concatenate([mean_affinity, mean_affinity])
    from_small = small[source]
    source, target, weight = source[from_small], target[from_small], weight[from_small]
    order = np.lexsort((-weight, source))
    source, target = source[order], target[order]
    best = np.r_[True, source[1:] != source[:-1]] if source.size else np.zeros(0, dtype=bool)
    source, target = source[best], target[best]
    n_nodes = labels.max() + 1
    links = coo_matrix((np.ones(source.size), (source, target)), shape=(n_nodes, n_nodes))
    component = connected_components(links, directed=False)[1].astype(np.int64) + 1
    component[0] = 0
    isolated = small.copy()
    isolated[source] = False
    component[isolated] = 0
    return component
