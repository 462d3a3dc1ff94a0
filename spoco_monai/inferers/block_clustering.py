"""Clustering of one block's blended prediction into labels, with the labels of its core numbered first."""

from __future__ import annotations

import numpy as np
import torch

from ..clustering import (
    embeddings_to_affinities,
    hdbscan_clustering,
    mutex_watershed_from_affinities,
    point_clustering,
    seeded_watershed_from_affinities,
)
from .settings import SegmentationSettings


def cluster_block(prediction: torch.Tensor, settings: SegmentationSettings) -> np.ndarray:
    """Labels of a block's extent from its blended prediction.

    Args:
        prediction: ``(K, *extent)`` affinities (``blend="affinities"``; on CPU they are overwritten, as the
            clustering consumes them) or ``(E, *extent)`` embeddings; then the localisation probability of a network
            with a localisation channel; then, last, the foreground probability when ``settings.foreground`` is set.
        settings: the segmentation settings (blend, clustering and its options, offsets, foreground).

    Returns:
        ``(*extent)`` integer labels (0 or negative where the clustering leaves voxels unlabelled).
    """
    values = prediction.cpu().numpy()
    options = dict(settings.clustering_kwargs)
    if settings.foreground is not None:
        values, options["mask"] = values[:-1], values[-1] > settings.foreground_threshold
    if settings.has_localization:
        values, localization = values[:-1], values[-1]
        if settings.clustering == "points":
            return point_clustering(values, localization, affinity_delta_dist=settings.affinity_delta_dist, **options)
    if settings.clustering == "hdbscan":
        return hdbscan_clustering(values, **options)
    if settings.blend == "embeddings":
        offsets = settings.offsets[: settings.spatial_dims] if settings.clustering == "watershed" else settings.offsets
        values = embeddings_to_affinities(values, offsets, settings.affinity_delta_dist)
        values = values.numpy() if isinstance(values, torch.Tensor) else values
    else:
        offsets = settings.offsets
    if settings.clustering == "watershed":
        return seeded_watershed_from_affinities(values, offsets, **options)
    # the prediction is not used after clustering: the Mutex Watershed may work in it instead of in a copy
    return mutex_watershed_from_affinities(values, offsets, overwrite_input=True, **options)


def core_labels_first(labels: np.ndarray, core: tuple[slice, ...]) -> tuple[np.ndarray, int]:
    """Relabel to 1.. with the labels present in the core first, so the core's ids are ``1 .. num_core``.

    Args:
        labels: ``(*extent)`` labels of a block; negative labels (e.g. unfilled HDBSCAN noise) count as 0.
        core: slices of the block's core within its extent.

    Returns:
        the ``(*extent)`` relabelled ``uint32`` labels and the number of labels in the core.
    """
    labels = np.maximum(labels, 0).astype(np.int64, copy=False)
    in_core = np.unique(labels[core])
    in_core = in_core[in_core > 0]
    everywhere = np.unique(labels)
    halo_only = np.setdiff1d(everywhere[everywhere > 0], in_core)
    lookup = np.zeros(int(everywhere.max()) + 1, dtype=np.uint32)
    lookup[in_core] = np.arange(1, len(in_core) + 1)
    lookup[halo_only] = np.arange(len(in_core) + 1, len(in_core) + len(halo_only) + 1)
    return lookup[labels], len(in_core)
