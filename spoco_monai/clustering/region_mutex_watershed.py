"""Mutex Watershed on a region graph: a fast approximation of the pixel-level Mutex Watershed for large inputs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from bioimage_cpp.graph import UndirectedGraph, grid_graph, region_adjacency_graph
from bioimage_cpp.graph import connected_components as masked_graph_components
from bioimage_cpp.graph.features import (
    affinity_features,
    grid_affinity_features,
    lifted_affinity_features,
    lifted_edges_from_affinities,
)
from bioimage_cpp.graph.mutex_watershed import mutex_watershed_clustering
from bioimage_cpp.segmentation import relabel_sequential

from .affinities import available_threads, overlap_slices


def region_mutex_watershed(
    affinities: np.ndarray, offsets: Sequence[Sequence[int]], threshold: float, mask: np.ndarray | None
) -> np.ndarray:
    """Mutex Watershed on the regions of a conservative over-segmentation.

    The pixel-level Mutex Watershed spends most of its time on the many strong mutex edges between pixels
    of different objects. Here pixels are first joined along nearest-neighbour edges with affinity
    ``>= threshold`` (connected components; a high threshold only joins pixels that are clearly alike).
    The regions then form a graph: neighbouring regions are linked attractively with their mean
    nearest-neighbour affinity, and repulsively (mutex) with ``1 - mean`` of the long-range affinities
    between them, for neighbouring and distant region pairs alike. The Mutex Watershed of
    ``bioimage_cpp.graph`` partitions this much smaller graph. The result approximates the pixel-level one;
    it can differ where a chain of intermediate pixels above ``threshold`` bridges two objects.

    Args:
        affinities: ``(C, *S)`` float32 affinities (1 = same object); the first ``len(S)`` channels are
            attractive nearest-neighbour edges, the others long-range.
        offsets: the ``C`` offsets.
        threshold: affinity at or above which neighbouring pixels are joined before the graph step.
        mask: optional ``S`` boolean foreground mask (0 outside).

    Returns:
        int64 labels of shape ``S``, consecutive from 1, 0 outside ``mask``.
    """
    n_attractive = affinities.ndim - 1
    offsets = [list(offset) for offset in offsets]
    regions = _join_similar_neighbours(affinities[:n_attractive], offsets[:n_attractive], threshold, mask)
    n_threads = available_threads()
    rag = region_adjacency_graph(regions, number_of_threads=n_threads)
    local = rag.uv_ids()
    attraction = affinity_features(
        rag, regions, affinities[:n_attractive], offsets[:n_attractive], number_of_threads=n_threads
    )
    # bioimage_cpp accumulates features in float64 and would convert the long-range channels on every call
    long_range = affinities[n_attractive:].astype(np.float64)
    local_long_range = affinity_features(rag, regions, long_range, offsets[n_attractive:], number_of_threads=n_threads)
    lifted = lifted_edges_from_affinities(rag, regions, offsets[n_attractive:], number_of_threads=n_threads)
    lifted_long_range = lifted_affinity_features(
        regions, long_range, offsets[n_attractive:], lifted, number_of_threads=n_threads
    )
    # region 0 is the masked-out background: it takes part in no edge
    foreground = (local != 0).all(axis=1)
    has_long_range = foreground & (local_long_range[:, 1] > 0)
    lifted_foreground = (lifted != 0).all(axis=1)
    mutex_uvs = np.concatenate([local[has_long_range], lifted[lifted_foreground]])
    mutex_costs = 1.0 - np.concatenate(
        [local_long_range[has_long_range, 0], lifted_long_range[lifted_foreground, 0]]
    )
    n_regions = int(regions.max()) + 1
    graph = UndirectedGraph.from_edges(n_regions, np.ascontiguousarray(local[foreground]))
    region_labels = mutex_watershed_clustering(
        graph, attraction[foreground, 0].astype(np.float32), mutex_uvs, mutex_costs.astype(np.float32)
    ).astype(np.int64) + 1
    region_labels[0] = 0
    return relabel_sequential(region_labels[regions])[0]


def _join_similar_neighbours(
    affinities: np.ndarray, offsets: list[list[int]], threshold: float, mask: np.ndarray | None
) -> np.ndarray:
    """uint64 connected components of the pixels linked by attractive affinity ``>= threshold``, 0 outside mask."""
    spatial_shape = affinities.shape[1:]
    if mask is not None:
        # no link may touch a masked-out pixel, on either end
        affinities = affinities * mask
        for channel, offset in enumerate(offsets):
            source, target = overlap_slices(offset, spatial_shape)
            affinities[(channel, *source)] *= mask[target]
    grid = grid_graph(spatial_shape)
    weights, valid = grid_affinity_features(grid, affinities, offsets)
    regions = masked_graph_components(grid, valid & (weights >= threshold)).reshape(spatial_shape) + np.uint64(1)
    if mask is not None:
        regions[~mask] = 0
    return relabel_sequential(regions)[0]
