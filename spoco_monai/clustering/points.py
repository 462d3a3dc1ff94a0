"""Pixels as points in embedding space: extraction, nearest-centre assignment, and back to label images."""

from __future__ import annotations

import numpy as np
import torch
from monai.utils import convert_to_tensor

# bound on the elements of one (points x centres) distance block, ~256 MB in float32
MAX_BLOCK_ELEMENTS = 2**26


def foreground_points(
    embeddings: np.ndarray | torch.Tensor, mask: np.ndarray | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The embeddings of the (masked) pixels as points.

    Args:
        embeddings: ``(E, *S)`` numpy array or tensor (any device).
        mask: optional ``S`` boolean foreground mask.

    Returns:
        ``(points, flat_index)``: float32 ``(N, E)`` points on the input's device and the int64 ``(N,)``
        flat pixel indices they come from (on the same device).
    """
    # a plain tensor: a MetaTensor would carry and update its metadata through every intermediate operation
    embeddings = convert_to_tensor(embeddings, track_meta=False).detach()
    flat = embeddings.reshape(embeddings.shape[0], -1).float()
    if mask is None:
        flat_index = torch.arange(flat.shape[1], device=flat.device)
    else:
        flat_index = torch.from_numpy(np.flatnonzero(mask)).to(flat.device)
    return flat[:, flat_index].T.contiguous(), flat_index


def nearest_centre(points: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of and distance to the nearest centre of every point, in blocks to bound memory.

    Args:
        points: ``(N, E)`` float tensor.
        centres: ``(K, E)`` float tensor on the same device, ``K >= 1``.

    Returns:
        ``(index, distance)``: int64 and float ``(N,)`` tensors.
    """
    block = max(1, MAX_BLOCK_ELEMENTS // max(1, centres.shape[0]))
    indices, distances = [], []
    for start in range(0, points.shape[0], block):
        distance, index = torch.cdist(points[start : start + block], centres).min(dim=1)
        indices.append(index)
        distances.append(distance)
    if not indices:
        return points.new_zeros(0, dtype=torch.int64), points.new_zeros(0)
    return torch.cat(indices), torch.cat(distances)


def labels_from_points(point_labels: torch.Tensor, flat_index: torch.Tensor, spatial_shape: tuple) -> np.ndarray:
    """Scatter per-point labels back into an int64 label image (0 where there is no point)."""
    labels = np.zeros(int(np.prod(spatial_shape)), dtype=np.int64)
    labels[flat_index.cpu().numpy()] = point_labels.cpu().numpy()
    return labels.reshape(spatial_shape)
