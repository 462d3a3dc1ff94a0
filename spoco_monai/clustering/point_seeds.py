"""Objects from points: seeds at the peaks of a localisation map (or at clicks), grown over the embeddings' borders.

A network trained from clicks (:class:`~spoco_monai.losses.PointLocalizationLoss` on an extra output channel)
predicts a localisation map with one blob per object; its peaks say how many objects there are and where. The
embeddings say where objects part: the seeds grow by a watershed over the border strength of neighbouring
embeddings (:func:`~spoco_monai.clustering.seeded_watershed.affinity_boundaries`), as in the seeded watershed
clustering, but with the seeds taken from the points instead of the shape of a foreground mask. Without a mask,
an object keeps the pixels whose embedding lies near its seed's, so that the seeds do not flood the background.
"""

from __future__ import annotations

import numpy as np
import torch
from bioimage_cpp.segmentation import relabel_sequential
from skimage.feature import peak_local_max
from skimage.measure import label as label_regions
from skimage.segmentation import watershed

from spoco_monai.validation import check_non_negative, check_open_unit_interval, check_positive

from .affinities import default_offsets, embeddings_to_affinities
from .inputs import check_embeddings, check_mask
from .seeded_watershed import affinity_boundaries

__all__ = ["localization_seeds", "point_clustering", "point_seeded_watershed"]


def localization_seeds(
    localization: np.ndarray | torch.Tensor, threshold: float = 0.5, min_distance: int = 3
) -> np.ndarray:
    """One seed at each local maximum of a localisation map above ``threshold``, at least ``min_distance`` apart.

    Args:
        localization: ``S`` probabilities (2D or 3D).
        threshold: smallest peak value, in (0, 1).
        min_distance: smallest distance between two seeds in pixels, >= 1.

    Returns:
        ``S`` int64 seed labels 1..N in raster order of the peaks (equal maxima on a plateau form one seed).

    Raises:
        ValueError: ``threshold`` outside (0, 1) or ``min_distance`` below 1.
    """
    check_open_unit_interval("threshold", threshold)
    if isinstance(min_distance, bool) or not isinstance(min_distance, int) or min_distance < 1:
        raise ValueError(f"min_distance must be an int >= 1, found {min_distance!r}.")
    if isinstance(localization, torch.Tensor):
        localization = localization.detach().float().cpu().numpy()
    localization = np.asarray(localization, dtype=np.float32)
    peaks = peak_local_max(
        localization, min_distance=min_distance, threshold_abs=threshold, exclude_border=False,
        labels=label_regions(localization > threshold),
    )
    marker = np.zeros(localization.shape, dtype=bool)
    marker[tuple(peaks.T)] = True
    return label_regions(marker).astype(np.int64)


def point_seeded_watershed(
    embeddings: np.ndarray | torch.Tensor,
    seeds: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None = None,
    embedding_radius: float | None = None,
    affinity_delta_dist: float = 2.0,
    min_size: int = 0,
) -> np.ndarray:
    """Grow point seeds into objects over the borders between neighbouring embeddings.

    1. The border strength of every pixel is 1 - the lowest affinity ``[1 - ||e_i - e_j|| / (2 affinity_delta_dist)]_+^2``
       to its nearest neighbours (:func:`~spoco_monai.clustering.seeded_watershed.affinity_boundaries`).
    2. A watershed of the border strength floods from the seeds (inside ``mask`` when given).
    3. With ``embedding_radius``, an object keeps only the pixels whose embedding lies within that distance of the
       mean embedding of its seed (SPOCO's objects are balls of radius about delta_v around their centres); the
       others become 0. Use it when there is no foreground mask.
    4. Objects under ``min_size`` pixels are dropped and the labels renumbered 1..N.

    Args:
        embeddings: ``(E, *S)`` embeddings (numpy or tensor).
        seeds: ``S`` int seed labels (> 0), e.g. :func:`localization_seeds` or the object clicks of a point
            annotation (one id per object; background clicks, -1, are not seeds).
        mask: optional ``S`` boolean foreground; pixels outside stay 0.
        embedding_radius: optional largest distance of an object's embedding from its seed's, > 0.
        affinity_delta_dist: the affinity kernel's delta_d, > 0.
        min_size: smallest object in pixels; 0 keeps all.

    Returns:
        int64 labels of shape ``S``: 1..N objects, 0 elsewhere.

    Raises:
        TypeError, ValueError: embeddings that are not ``(E, *S)`` floats, seeds or a mask of another shape, or
            invalid numbers.
    """
    check_embeddings(embeddings)
    spatial_shape = tuple(embeddings.shape[1:])
    seeds = seeds.detach().cpu().numpy() if isinstance(seeds, torch.Tensor) else np.asarray(seeds)
    if seeds.shape != spatial_shape:
        raise ValueError(f"seeds must have the embeddings' spatial shape {spatial_shape}, found {seeds.shape}.")
    mask = check_mask(mask, spatial_shape)
    if embedding_radius is not None:
        check_positive("embedding_radius", embedding_radius)
    check_positive("affinity_delta_dist", affinity_delta_dist)
    check_non_negative("min_size", min_size)
    seeds = np.where(seeds > 0, seeds, 0).astype(np.int64)
    if mask is not None:
        seeds = np.where(mask, seeds, 0)
    if not bool(seeds.any()):
        return np.zeros(spatial_shape, dtype=np.int64)
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().float().cpu().numpy()
    values = np.asarray(embeddings, dtype=np.float32)
    offsets = default_offsets(len(spatial_shape))[: len(spatial_shape)]
    affinities = np.asarray(embeddings_to_affinities(values, offsets, affinity_delta_dist), dtype=np.float32)
    labels = watershed(affinity_boundaries(affinities, offsets), seeds, mask=mask).astype(np.int64)
    if embedding_radius is not None:
        flat = values.reshape(values.shape[0], -1)
        seed_sizes = np.bincount(seeds.ravel(), minlength=labels.max() + 1)
        slots = labels.max() + 1
        centres = np.stack([np.bincount(seeds.ravel(), weights=channel, minlength=slots) for channel in flat])
        centres = centres / np.maximum(seed_sizes, 1)
        distance = np.linalg.norm(flat - centres[:, labels.ravel()], axis=0).reshape(spatial_shape)
        labels[distance > embedding_radius] = 0
    if min_size > 0:
        sizes = np.bincount(labels.ravel())
        labels[sizes[labels] < min_size] = 0
    return relabel_sequential(labels)[0].astype(np.int64)


def point_clustering(
    embeddings: np.ndarray | torch.Tensor,
    localization: np.ndarray | torch.Tensor,
    threshold: float = 0.5,
    min_distance: int = 3,
    embedding_radius: float | None = None,
    affinity_delta_dist: float = 2.0,
    mask: np.ndarray | torch.Tensor | None = None,
    min_size: int = 0,
) -> np.ndarray:
    """Objects of a network trained from clicks: seeds at its localisation map's peaks, grown over its embeddings.

    :func:`localization_seeds` then :func:`point_seeded_watershed`; the ``"points"`` clustering of
    :class:`~spoco_monai.inferers.SegmentationSettings`.

    Args:
        embeddings: ``(E, *S)`` embeddings.
        localization: ``S`` localisation probabilities (the sigmoid of the network's localisation channel).
        threshold: smallest peak value of a seed, in (0, 1).
        min_distance: smallest distance between two seeds in pixels, >= 1 (about an object's radius).
        embedding_radius: largest distance of an object's embedding from its seed's, > 0; needed without ``mask``.
        affinity_delta_dist: the affinity kernel's delta_d, > 0.
        mask: optional ``S`` boolean foreground; seeds and objects only inside it.
        min_size: smallest object in pixels; 0 keeps all.

    Returns:
        int64 labels of shape ``S``: 1..N objects, 0 elsewhere (all 0 when no peak reaches ``threshold``).

    Raises:
        TypeError, ValueError: see :func:`localization_seeds` and :func:`point_seeded_watershed`.
    """
    check_embeddings(embeddings)
    if tuple(localization.shape) != tuple(embeddings.shape[1:]):
        raise ValueError(
            f"localization must have the embeddings' spatial shape {tuple(embeddings.shape[1:])}, found "
            f"{tuple(localization.shape)}."
        )
    seeds = localization_seeds(localization, threshold, min_distance)
    return point_seeded_watershed(embeddings, seeds, mask, embedding_radius, affinity_delta_dist, min_size)
