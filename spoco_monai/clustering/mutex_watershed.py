"""Mutex Watershed (Wolf et al. 2018) on embedding affinities, with ``bioimage_cpp`` doing the partition."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from bioimage_cpp.segmentation import mutex_watershed as _bioimage_mutex_watershed
from bioimage_cpp.segmentation import relabel_sequential
from monai.utils import convert_to_tensor

from spoco_monai.validation import check_non_negative

from .affinities import default_offsets, embeddings_to_affinities
from .background import drop_background_segment
from .inputs import check_background_embedding, check_embeddings, check_mask, check_offsets
from .region_mutex_watershed import region_mutex_watershed
from .size_filter import merge_small_segments


def mutex_watershed_from_affinities(
    affinities: np.ndarray | torch.Tensor,
    offsets: Sequence[Sequence[int]],
    strides: Sequence[int] | None = None,
    mask: np.ndarray | torch.Tensor | None = None,
    min_size: int = 0,
    presegment_threshold: float | None = None,
    overwrite_input: bool = False,
) -> np.ndarray:
    """Partition a 2D/3D grid with the Mutex Watershed.

    All channels are affinities in method.md's sense (1 = same object). The first ``len(S)`` channels are
    the attractive edges (weight ``a``); the others are mutex edges, given to ``bioimage_cpp`` as the
    repulsion weight ``1 - a``. Edges leaving the array are ignored.

    Args:
        affinities: ``(len(offsets), *S)`` affinities in [0, 1], numpy array or tensor (any device).
        offsets: one offset per channel, ``len(S)`` integers each; the first ``len(S)`` are attractive.
        strides: optional sub-sampling of the mutex edges, one positive integer per spatial axis
            (attractive edges are always kept); trades a little quality for speed on large 3D inputs.
        mask: optional ``S`` boolean foreground mask; background pixels get label 0 and their edges are ignored.
        min_size: segments with fewer pixels are merged into their best neighbour (see
            :func:`~spoco_monai.clustering.size_filter.merge_small_segments`); 0 disables the filter.
        presegment_threshold: None runs the exact pixel-level Mutex Watershed. A value in (0, 1] first
            joins neighbouring pixels whose affinity reaches it and runs the Mutex Watershed on the graph
            of these regions (:func:`~spoco_monai.clustering.region_mutex_watershed.region_mutex_watershed`):
            tens of times faster on large 3D inputs and, for a high threshold such as 0.5, nearly always
            the same partition. Cannot be combined with ``strides``.
        overwrite_input: let the function work in ``affinities`` itself (its values are changed) when it is a
            float32, C-contiguous numpy array or CPU tensor, instead of in a copy: one copy of a large block's
            affinities less in memory. The labels are the same.

    Returns:
        int64 labels of shape ``S``: consecutive ids from 1, 0 only outside ``mask`` (or for a small
        segment without neighbours, see ``min_size``).

    Raises:
        TypeError, ValueError: for affinities that are not a ``(C, *S)`` float array with 2D/3D ``S``,
            offsets that do not match the channels, invalid strides, mask or ``min_size``.
    """
    check_embeddings(affinities, name="affinities")
    spatial_shape = tuple(affinities.shape[1:])
    offsets = _check_channel_offsets(offsets, affinities.shape[0], len(spatial_shape))
    strides = _check_strides(strides, len(spatial_shape))
    mask = check_mask(mask, spatial_shape)
    check_non_negative("min_size", min_size)
    _check_presegment_threshold(presegment_threshold, strides)
    if isinstance(affinities, torch.Tensor):
        affinities = affinities.detach().cpu().numpy()
    weights = np.array(affinities, dtype=np.float32, order="C", copy=None if overwrite_input else True)
    return _partition(weights, offsets, strides, mask, min_size, presegment_threshold)


def mutex_watershed(
    embeddings: np.ndarray | torch.Tensor,
    offsets: Sequence[Sequence[int]] | None = None,
    affinity_delta_dist: float = 2.0,
    strides: Sequence[int] | None = None,
    mask: np.ndarray | torch.Tensor | None = None,
    min_size: int = 0,
    presegment_threshold: float | None = None,
    background_embedding: np.ndarray | torch.Tensor | None = None,
) -> np.ndarray:
    """Instances from pixel embeddings: embedding affinities, then the Mutex Watershed.

    Args:
        embeddings: ``(E, *S)`` float array or tensor, 2D or 3D spatial. Affinities are computed on the
            tensor's device (GPU when present); CPU input uses the multi-threaded ``bioimage_cpp`` kernel.
        offsets: affinity offsets; default :func:`default_offsets` (nearest neighbours attractive, then
            3, 9, 27 along each axis as mutex edges). The first ``len(S)`` offsets are attractive.
        affinity_delta_dist: the affinity kernel's width ``delta_d``, see :func:`embeddings_to_affinities`.
        strides: optional mutex-edge sub-sampling, see :func:`mutex_watershed_from_affinities`.
        mask: optional ``S`` boolean foreground mask (0 outside).
        min_size: size filter, see :func:`mutex_watershed_from_affinities`.
        presegment_threshold: None for the exact pixel-level Mutex Watershed, or a threshold for the much
            faster region-graph variant, see :func:`mutex_watershed_from_affinities`.
        background_embedding: optional ``(E,)`` embedding of the background; when given, the segment whose
            mean embedding is closest to it is set to 0 (see :func:`drop_background_segment`). Off by default.

    Returns:
        int64 labels of shape ``S``, consecutive ids from 1, 0 for masked-out or dropped background pixels.

    Raises:
        TypeError, ValueError: for invalid embeddings, offsets, ``affinity_delta_dist``, strides, mask or ``min_size``.
    """
    check_embeddings(embeddings)
    spatial_dims = embeddings.ndim - 1
    offsets = default_offsets(spatial_dims) if offsets is None else offsets
    offsets = _check_channel_offsets(offsets, len(offsets), spatial_dims)
    strides = _check_strides(strides, spatial_dims)
    mask = check_mask(mask, embeddings.shape[1:])
    check_non_negative("min_size", min_size)
    _check_presegment_threshold(presegment_threshold, strides)
    check_background_embedding(background_embedding, embeddings.shape[0])
    if isinstance(embeddings, torch.Tensor) and embeddings.device.type == "cpu":
        # the C++ distance kernel beats strided torch slicing on CPU; the view shares memory
        embeddings = convert_to_tensor(embeddings, track_meta=False).detach().numpy()
    affinities = embeddings_to_affinities(embeddings, offsets, affinity_delta_dist)
    if isinstance(affinities, torch.Tensor):
        affinities = affinities.cpu().numpy()
    labels = _partition(affinities, offsets, strides, mask, min_size, presegment_threshold)
    if background_embedding is not None:
        labels = drop_background_segment(labels, embeddings, background_embedding)
    return labels


def _partition(
    affinities: np.ndarray,
    offsets: list[tuple[int, ...]],
    strides: list[int] | None,
    mask: np.ndarray | None,
    min_size: int,
    presegment_threshold: float | None,
) -> np.ndarray:
    """Run the Mutex Watershed on a float32 C-contiguous affinity array that this function may modify."""
    n_attractive = affinities.ndim - 1
    if presegment_threshold is not None:
        labels = region_mutex_watershed(affinities, offsets, presegment_threshold, mask)
    else:
        mutex = affinities[n_attractive:]
        np.subtract(1.0, mutex, out=mutex)
        labels = _bioimage_mutex_watershed(affinities, offsets, n_attractive, strides=strides, mask=mask)
        labels = labels.astype(np.int64)
        if mask is not None:
            # bioimage_cpp numbers the masked-out pixels before zeroing them
            labels = relabel_sequential(labels)[0]
    if min_size > 0:
        labels = merge_small_segments(labels, affinities[:n_attractive], offsets[:n_attractive], min_size)
    return labels


def _check_channel_offsets(offsets: Sequence[Sequence[int]], n_channels: int, spatial_dims: int) -> list:
    offsets = check_offsets(offsets, spatial_dims)
    if len(offsets) != n_channels:
        raise ValueError(f"expected one offset per affinity channel ({n_channels}), got {len(offsets)} offsets.")
    if n_channels < spatial_dims:
        raise ValueError(
            f"expected at least the {spatial_dims} attractive channels (then mutex channels), got {n_channels}."
        )
    return offsets


def _check_presegment_threshold(threshold: float | None, strides: list[int] | None) -> None:
    if threshold is None:
        return
    if not 0 < threshold <= 1:
        raise ValueError(f"presegment_threshold must be None or in (0, 1], got {threshold}.")
    if strides is not None:
        raise ValueError("strides only apply to the pixel-level Mutex Watershed (presegment_threshold=None).")


def _check_strides(strides: Sequence[int] | None, spatial_dims: int) -> list[int] | None:
    if strides is None:
        return None
    strides = list(strides)
    if len(strides) != spatial_dims or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in strides):
        raise ValueError(f"strides must be {spatial_dims} positive integers, got {strides}.")
    return [int(s) for s in strides]
