"""Embeddings as a colour picture: their first three principal components mapped to RGB."""

from __future__ import annotations

import numpy as np
import torch


def embedding_pca_rgb(embeddings: np.ndarray | torch.Tensor) -> np.ndarray:
    """Project embeddings onto their first three principal components, as colours.

    Each component's sign is fixed so that its largest loading is positive (the convention of scikit-learn's
    ``svd_flip``): the SVD's arbitrary sign would otherwise swap colours between pictures of similar embeddings,
    e.g. the same validation image logged at successive training iterations.

    Args:
        embeddings: (E, *S) float array, E >= 1.

    Returns:
        (*S, 3) float32 in [0, 1]: each component clipped to its 1st-99th percentile and scaled to [0, 1];
        components beyond E are 0 (E = 1 gives a red picture, E = 2 red and green).

    Raises:
        ValueError: ``embeddings`` has fewer than 2 dimensions.
    """
    values = np.asarray(embeddings.detach().cpu() if isinstance(embeddings, torch.Tensor) else embeddings, np.float64)
    if values.ndim < 2:
        raise ValueError(f"embeddings must have shape (E, *S), got shape {values.shape}.")
    spatial = values.shape[1:]
    points = values.reshape(values.shape[0], -1).T
    points = points - points.mean(axis=0)
    _, _, components = np.linalg.svd(points, full_matrices=False)
    components = components[:3]
    largest = np.abs(components).argmax(axis=1)
    components = components * np.where(components[np.arange(len(components)), largest] < 0, -1.0, 1.0)[:, None]
    projected = points @ components.T
    low, high = np.percentile(projected, [1, 99], axis=0)
    scaled = np.clip((projected - low) / np.maximum(high - low, 1e-12), 0.0, 1.0)
    rgb = np.zeros((points.shape[0], 3), np.float32)
    rgb[:, : scaled.shape[1]] = scaled
    return rgb.reshape(*spatial, 3)
