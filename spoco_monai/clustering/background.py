"""Optional removal of background segments, shared by every clustering method and the post-transforms."""

from __future__ import annotations

import numpy as np
import torch
from bioimage_cpp.segmentation import relabel_sequential

from .points import as_plain_tensor
from .validation import check_background_embedding


def drop_background_segment(
    labels: np.ndarray, embeddings: np.ndarray | torch.Tensor, background_embedding: np.ndarray | torch.Tensor
) -> np.ndarray:
    """Set to 0 the segment whose mean embedding is closest to ``background_embedding``.

    In dense (fully supervised) training the background is one more object, so every clustering method
    returns it as a segment. Given a reference embedding of the background (e.g. the mean embedding of
    annotated background pixels), the closest segment is removed and the others are relabelled
    consecutively. Exactly one segment is dropped, however far it is, so only use this when the input is
    known to contain background.

    Args:
        labels: int64 ``S`` labels, 0 = already unlabeled (ignored).
        embeddings: ``(E, *S)`` embeddings the labels were computed from (numpy or tensor, any device).
        background_embedding: ``(E,)`` reference embedding of the background.

    Returns:
        int64 ``S`` labels with the background segment set to 0 and ids consecutive from 1.

    Raises:
        ValueError: if ``background_embedding`` does not have shape ``(E,)`` or the shapes do not match.
    """
    embeddings = as_plain_tensor(embeddings)
    check_background_embedding(background_embedding, embeddings.shape[0])
    if tuple(labels.shape) != tuple(embeddings.shape[1:]):
        raise ValueError(
            f"labels must have the spatial shape of the embeddings {tuple(embeddings.shape[1:])}, got {labels.shape}."
        )
    if labels.max(initial=0) == 0:
        return labels
    flat_embeddings = embeddings.reshape(embeddings.shape[0], -1).T.float()
    flat_labels = torch.from_numpy(np.ascontiguousarray(labels).reshape(-1)).to(flat_embeddings.device)
    n_segments = int(labels.max()) + 1
    sums = flat_embeddings.new_zeros((n_segments, flat_embeddings.shape[1])).index_add_(0, flat_labels, flat_embeddings)
    counts = torch.bincount(flat_labels, minlength=n_segments)
    background = torch.as_tensor(background_embedding, dtype=sums.dtype, device=sums.device)
    distances = torch.linalg.vector_norm(sums / counts.clamp(min=1)[:, None] - background, dim=1)
    # label 0 and absent ids are never the background segment
    distances[counts == 0] = torch.inf
    distances[0] = torch.inf
    dropped = int(torch.argmin(distances))
    labels = np.where(labels == dropped, 0, labels)
    return relabel_sequential(labels)[0]


def drop_segments_outside_foreground(
    labels: np.ndarray, foreground: np.ndarray, min_foreground_fraction: float = 0.5
) -> np.ndarray:
    """Set to 0 every segment that lies mostly outside a foreground mask.

    Sparse (positive-unlabeled) training never labels the background, so the clustering returns it as one or
    more ordinary segments. Given a foreground mask of the image (e.g. an intensity threshold of a
    fluorescence image), a segment is kept when at least ``min_foreground_fraction`` of its pixels are
    foreground; the kept segments keep their full shape, learned from the embeddings.

    Args:
        labels: ``S`` int instance labels (0 = no segment).
        foreground: ``S`` boolean foreground mask.
        min_foreground_fraction: smallest fraction of foreground pixels of a kept segment, in ``[0, 1]``.

    Returns:
        int64 ``S`` labels without the background segments, ids consecutive from 1.

    Raises:
        ValueError: if the shapes differ, the mask is not boolean or the fraction is outside ``[0, 1]``.
    """
    if not 0.0 <= min_foreground_fraction <= 1.0:
        raise ValueError(f"min_foreground_fraction must be in [0, 1], got {min_foreground_fraction}.")
    if tuple(foreground.shape) != tuple(labels.shape):
        raise ValueError(f"foreground must have the shape of labels {tuple(labels.shape)}, got {foreground.shape}.")
    if foreground.dtype != np.bool_:
        raise ValueError(f"foreground must be a boolean mask, got dtype {foreground.dtype}.")
    flat_labels = np.ascontiguousarray(labels, dtype=np.int64).reshape(-1)
    if flat_labels.size == 0 or flat_labels.max() == 0:
        return np.zeros(labels.shape, dtype=np.int64)
    counts = np.bincount(flat_labels)
    foreground_counts = np.bincount(flat_labels, weights=foreground.reshape(-1), minlength=counts.size)
    background_ids = foreground_counts < min_foreground_fraction * counts
    background_ids[0] = True
    return relabel_sequential(np.where(background_ids[flat_labels], 0, flat_labels).reshape(labels.shape))[0]
