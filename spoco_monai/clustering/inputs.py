"""Input checks shared by the clustering functions (run once, where user input enters)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def check_embeddings(embeddings: np.ndarray | torch.Tensor, name: str = "embeddings") -> None:
    """Check that ``embeddings`` is a floating ``(E, *S)`` array or tensor with 2 or 3 spatial dimensions.

    Raises:
        TypeError: if it is neither a numpy array nor a torch tensor, or not floating point.
        ValueError: if it is not 3D/4D or has an empty dimension.
    """
    if not isinstance(embeddings, (np.ndarray, torch.Tensor)):
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(embeddings).__name__}.")
    floating = embeddings.is_floating_point() if isinstance(embeddings, torch.Tensor) else (
        np.issubdtype(embeddings.dtype, np.floating)
    )
    if not floating:
        raise TypeError(f"{name} must be floating point, got dtype {embeddings.dtype}.")
    if embeddings.ndim not in (3, 4):
        raise ValueError(
            f"{name} must have shape (C, H, W) or (C, D, H, W), got {embeddings.ndim} dimensions "
            f"(shape {tuple(embeddings.shape)})."
        )
    if min(embeddings.shape) == 0:
        raise ValueError(f"{name} must not have an empty dimension, got shape {tuple(embeddings.shape)}.")


def check_offsets(offsets: Sequence[Sequence[int]], spatial_dims: int) -> list[tuple[int, ...]]:
    """Check that ``offsets`` is a non-empty list of non-zero integer offsets with ``spatial_dims`` entries each.

    Returns:
        the offsets as a list of integer tuples.

    Raises:
        ValueError: if the list is empty or an offset has the wrong length, non-integers or is all zero.
    """
    checked = []
    for offset in offsets:
        offset = tuple(offset)
        if len(offset) != spatial_dims or not all(isinstance(o, (int, np.integer)) for o in offset):
            raise ValueError(
                f"each offset must be {spatial_dims} integers (one per spatial axis), got {offset}."
            )
        if not any(offset):
            raise ValueError(f"offsets must be non-zero, got {offset}.")
        checked.append(tuple(int(o) for o in offset))
    if not checked:
        raise ValueError("offsets must not be empty.")
    return checked


def check_mask(mask: np.ndarray | torch.Tensor | None, spatial_shape: Sequence[int]) -> np.ndarray | None:
    """Check a foreground mask against the spatial shape and return it as a boolean numpy array.

    Raises:
        TypeError: if the mask is neither a numpy array nor a torch tensor.
        ValueError: if its shape differs from ``spatial_shape``.
    """
    if mask is None:
        return None
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"mask must be a numpy array or a torch tensor, got {type(mask).__name__}.")
    if tuple(mask.shape) != tuple(spatial_shape):
        raise ValueError(f"mask must have the spatial shape {tuple(spatial_shape)}, got {tuple(mask.shape)}.")
    return mask.astype(bool, copy=False)


def check_background_embedding(background_embedding: np.ndarray | torch.Tensor | None, embedding_dim: int) -> None:
    """Check that an optional background embedding is a vector of ``embedding_dim`` numbers.

    Raises:
        ValueError: if it is given with a shape other than ``(embedding_dim,)``.
    """
    if background_embedding is not None and tuple(np.shape(background_embedding)) != (embedding_dim,):
        raise ValueError(
            f"background_embedding must have shape ({embedding_dim},), got {tuple(np.shape(background_embedding))}."
        )
