"""Seeded watersheds on the raw image: bright objects on a dark background, or cells outlined by a membrane stain.

Both work on 2D and 3D arrays and take the voxel size into account (``sigma`` and ``min_distance`` are in voxels
of the finest axis and shrink along coarser axes), so they can stand beside a trained model on the same data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.filters import gaussian, threshold_otsu
from skimage.morphology import remove_small_objects
from skimage.segmentation import watershed

from ..clustering.seeded_watershed import distance_seeds, voxel_lengths

__all__ = ["nuclei_watershed", "membrane_watershed"]


def _smoothed(image: np.ndarray, sigma: float, element_size: Sequence[float] | None) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be a 2D or 3D array without channel axis, got shape {image.shape}.")
    if not np.isfinite(image).all():
        raise ValueError("image holds NaN or infinite values.")
    return gaussian(image, sigma=voxel_lengths(sigma, element_size, image.ndim), preserve_range=True)


def nuclei_watershed(
    image: np.ndarray,
    min_distance: float = 9,
    sigma: float = 1.0,
    min_size: int = 15,
    element_size: Sequence[float] | None = None,
) -> np.ndarray:
    """Bright objects on a dark background: Otsu mask, distance-transform seeds, watershed inside the mask.

    The image is smoothed with a Gaussian of ``sigma``, thresholded at its Otsu value, holes are filled and
    pieces under ``min_size`` voxels dropped; seeds are the maxima of the (physical) distance to the background
    at least ``min_distance`` apart, and the watershed of the negative distance grows them inside the mask.
    ``min_distance`` 9 was the best of 3..20 pixels on 30 DSB2018 training images (see ``bench/peers.py``).

    Args:
        image: (H, W) or (D, H, W) intensities.
        min_distance: smallest distance between two seeds, in voxels of the finest axis.
        sigma: Gaussian smoothing, in voxels of the finest axis.
        min_size: smallest object in voxels.
        element_size: voxel size per axis, or None for isotropic data.

    Returns:
        int32 labels, 0 background, objects 1..N.

    Raises:
        ValueError: for an image that is not 2D/3D or not finite, or invalid element sizes.
    """
    smoothed = _smoothed(image, sigma, element_size)
    if smoothed.min() == smoothed.max():
        return np.zeros(smoothed.shape, dtype=np.int32)
    mask = ndimage.binary_fill_holes(smoothed > threshold_otsu(smoothed))
    mask = remove_small_objects(mask, max_size=min_size - 1) if min_size > 1 else mask
    distance, markers = distance_seeds(mask, min_distance, element_size)
    return watershed(-distance, markers, mask=mask).astype(np.int32)


def membrane_watershed(
    image: np.ndarray,
    min_distance: float = 6,
    sigma: float = 1.0,
    element_size: Sequence[float] | None = None,
) -> np.ndarray:
    """Cells outlined by a bright membrane: seeds in the dark cell interiors, watershed on the smoothed image.

    The image is smoothed with a Gaussian of ``sigma``; voxels below its Otsu value are cell interior; seeds
    are the maxima of the (physical) distance from the membrane, at least ``min_distance`` apart; the watershed
    of the smoothed intensity grows them until they meet on the membranes. Every voxel gets a cell (dense tissue).

    Args:
        image: (H, W) or (D, H, W) intensities, membranes bright.
        min_distance: smallest distance between two seeds, in voxels of the finest axis (about a cell radius).
        sigma: Gaussian smoothing, in voxels of the finest axis.
        element_size: voxel size per axis, or None for isotropic data.

    Returns:
        int32 labels, cells 1..N covering the image.

    Raises:
        ValueError: for an image that is not 2D/3D or not finite, or invalid element sizes.
    """
    smoothed = _smoothed(image, sigma, element_size)
    if smoothed.min() == smoothed.max():
        return np.ones(smoothed.shape, dtype=np.int32)
    _, markers = distance_seeds(smoothed < threshold_otsu(smoothed), min_distance, element_size)
    return watershed(smoothed, markers).astype(np.int32)
