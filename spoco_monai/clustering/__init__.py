"""Clustering of pixel embeddings into instances: Mutex Watershed on embedding affinities, a seeded watershed
inside a foreground mask, objects grown from points (localisation peaks or clicks), HDBSCAN, mean-shift and
consistency clustering (all 2D and 3D, numpy arrays or torch tensors in, int64 labels out)."""

from __future__ import annotations

from .affinities import default_offsets, embeddings_to_affinities
from .background import drop_background_segment
from .consistency import consistency_clustering
from .hdbscan_clustering import hdbscan_clustering
from .mean_shift import mean_shift_clustering
from .mutex_watershed import mutex_watershed, mutex_watershed_from_affinities
from .point_seeds import localization_seeds, point_clustering, point_seeded_watershed
from .seeded_watershed import seeded_watershed_from_affinities
from .size_filter import merge_small_segments
from .synthetic import make_synthetic_embeddings

__all__ = [
    "consistency_clustering",
    "default_offsets",
    "drop_background_segment",
    "embeddings_to_affinities",
    "hdbscan_clustering",
    "make_synthetic_embeddings",
    "mean_shift_clustering",
    "localization_seeds",
    "merge_small_segments",
    "mutex_watershed",
    "mutex_watershed_from_affinities",
    "point_clustering",
    "point_seeded_watershed",
    "seeded_watershed_from_affinities",
]
