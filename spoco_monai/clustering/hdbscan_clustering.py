"""HDBSCAN clustering of pixel embeddings, tractable on 3D patches through subsampling."""

from __future__ import annotations

import numpy as np
import torch
from bioimage_cpp.segmentation import relabel_sequential
from monai.utils import OptionalImportError, convert_to_tensor, optional_import
from skimage.measure import label as label_regions

from spoco_monai.validation import check_non_negative, check_positive

from .affinities import default_offsets, embeddings_to_affinities
from .background import drop_background_segment
from .inputs import check_background_embedding, check_embeddings, check_mask
from .points import foreground_points, labels_from_points, nearest_centre
from .size_filter import merge_small_segments

__all__ = ["HDBSCAN_MISSING", "hdbscan_clustering", "hdbscan_installed"]

# hdbscan is an optional dependency: only this clustering needs it
HDBSCAN_MISSING = (
    "HDBSCAN clustering needs the hdbscan package, which is not installed: pip install 'spoco-monai[hdbscan]' "
    "(or pip install hdbscan), or choose the clustering 'mws' or 'watershed'."
)


def hdbscan_installed() -> bool:
    """Whether the optional ``hdbscan`` package can be imported (it is imported here, not with this module)."""
    return optional_import("hdbscan")[1]


def hdbscan_clustering(
    embeddings: np.ndarray | torch.Tensor,
    min_size: int,
    epsilon: float = 0.5,
    fill_noise: bool = True,
    mask: np.ndarray | torch.Tensor | None = None,
    max_samples: int | None = 10000,
    seed: int = 0,
    min_samples: int | None = None,
    background_embedding: np.ndarray | torch.Tensor | None = None,
    split_connected: bool = False,
) -> np.ndarray:
    """Instances by HDBSCAN (McInnes et al. 2017) on the pixel embeddings.

    HDBSCAN is run on at most ``max_samples`` pixels drawn with ``seed`` (all pixels when there are fewer,
    or when ``max_samples`` is None). ``min_size`` is a size in pixels of the whole input and is scaled
    by the sampling fraction (at least 2). The pixels that were not sampled are assigned to the nearest
    cluster centre (mean embedding of the cluster's sampled points) when they lie within that cluster's
    radius (largest distance of a sampled member to the centre), else they are noise. SPOCO's pull term
    makes clusters compact balls of radius ~``delta_v``, which is what the centre assignment assumes;
    ``hdbscan.approximate_predict`` would be the density-based alternative but is orders of magnitude
    slower on millions of pixels.

    With ``fill_noise`` every noise pixel gets the nearest cluster centre in embedding space, so dense
    tissue has no holes; otherwise noise pixels are 0. HDBSCAN may select a single cluster (an input
    holding one object, such as a block of a large volume, is one segment); if it finds no cluster, the
    result is all 0.

    Args:
        embeddings: ``(E, *S)`` float array or tensor, 2D or 3D spatial.
        min_size: minimum object size in pixels (HDBSCAN's ``min_cluster_size`` before scaling), >= 2.
        epsilon: HDBSCAN's ``cluster_selection_epsilon``; ``delta_v`` in the paper.
        fill_noise: assign noise pixels to the nearest cluster (see above).
        mask: optional ``S`` boolean foreground mask; only masked pixels are clustered, others are 0.
        max_samples: number of pixels HDBSCAN is fitted on, or None for all of them.
        seed: seed of the subsample.
        min_samples: HDBSCAN's ``min_samples`` (None: the library default, the scaled ``min_size``).
        background_embedding: optional ``(E,)`` background reference; the closest segment is set to 0
            (:func:`drop_background_segment`). Off by default.
        split_connected: give every spatially connected piece of a cluster (face connectivity) an id of its
            own. HDBSCAN sees only the embeddings, and the loss separates only objects that share a training
            patch, so distant objects may share an embedding and one cluster; splitting separates them.
            Pieces smaller than ``min_size`` then join the touching piece of the most similar embeddings.

    Returns:
        int64 labels of shape ``S``, consecutive from 1, 0 for noise (without ``fill_noise``) and outside ``mask``.

    Raises:
        TypeError, ValueError: for invalid embeddings, mask or parameters.
        monai.utils.OptionalImportError: the optional ``hdbscan`` package is not installed.
    """
    check_embeddings(embeddings)
    if min_size < 2:
        raise ValueError(f"min_size must be at least 2 pixels, got {min_size}.")
    check_non_negative("epsilon", epsilon)
    if max_samples is not None:
        check_positive("max_samples", max_samples)
    if min_samples is not None:
        check_positive("min_samples", min_samples)
    mask = check_mask(mask, embeddings.shape[1:])
    check_background_embedding(background_embedding, embeddings.shape[0])
    points, flat_index = foreground_points(embeddings, mask)
    points = points.cpu()
    n_points = points.shape[0]
    if max_samples is None or n_points <= max_samples:
        sample = torch.arange(n_points)
    else:
        sample = torch.randperm(n_points, generator=torch.Generator().manual_seed(seed))[:max_samples]
    min_cluster_size = max(2, round(min_size * sample.numel() / max(n_points, 1)))
    sample_labels = _fit_hdbscan(points[sample].numpy(), min_cluster_size, epsilon, min_samples)
    point_labels = torch.zeros(n_points, dtype=torch.int64)
    if sample_labels.max(initial=0) > 0:
        point_labels = _assign(points, sample, torch.from_numpy(sample_labels), fill_noise)
    labels = labels_from_points(point_labels, flat_index, tuple(embeddings.shape[1:]))
    if split_connected:
        labels = _split_connected(labels, embeddings, min_size)
    labels = relabel_sequential(labels)[0]
    if background_embedding is not None:
        labels = drop_background_segment(labels, embeddings, background_embedding)
    return labels


def _fit_hdbscan(points: np.ndarray, min_cluster_size: int, epsilon: float, min_samples: int | None) -> np.ndarray:
    """HDBSCAN labels of ``points``: 1-based clusters, 0 = noise."""
    # imported here: only this clustering mode needs hdbscan, so importing the package does not load it
    hdbscan, installed = optional_import("hdbscan")
    if not installed:
        raise OptionalImportError(HDBSCAN_MISSING)
    if points.shape[0] < min_cluster_size:
        return np.zeros(points.shape[0], dtype=np.int64)
    clusterer = hdbscan.HDBSCAN(
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
        cluster_selection_epsilon=float(epsilon),
        allow_single_cluster=True,
    )
    return clusterer.fit_predict(points.astype(np.float64)).astype(np.int64) + 1


def _assign(points: torch.Tensor, sample: torch.Tensor, sample_labels: torch.Tensor, fill_noise: bool) -> torch.Tensor:
    """Labels of all points from the labels of the sampled ones (see :func:`hdbscan_clustering`)."""
    members = sample_labels > 0
    clustered = sample_labels[members] - 1
    n_clusters = int(clustered.max()) + 1
    member_points = points[sample[members]]
    centres = torch.zeros(n_clusters, points.shape[1]).index_add_(0, clustered, member_points)
    centres /= torch.bincount(clustered, minlength=n_clusters)[:, None]
    radius = torch.zeros(n_clusters).scatter_reduce_(
        0, clustered, torch.linalg.vector_norm(member_points - centres[clustered], dim=1), reduce="amax"
    )
    nearest, distance = nearest_centre(points, centres)
    labels = nearest + 1
    if not fill_noise:
        labels[distance > radius[nearest]] = 0
        labels[sample] = sample_labels
    else:
        labels[sample[members]] = sample_labels[members]
    return labels


def _split_connected(labels: np.ndarray, embeddings: np.ndarray | torch.Tensor, min_size: int) -> np.ndarray:
    """Split clusters into face-connected pieces; merge pieces under ``min_size`` into their best neighbour."""
    pieces = label_regions(labels, background=0, connectivity=1).astype(np.int64, copy=False)
    offsets = default_offsets(labels.ndim)[: labels.ndim]
    affinities = embeddings_to_affinities(convert_to_tensor(embeddings, track_meta=False).detach().float(), offsets)
    return merge_small_segments(pieces, affinities.cpu().numpy(), offsets, min_size)
