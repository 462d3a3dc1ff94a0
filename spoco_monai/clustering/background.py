"""Optional removal of the background segment of densely trained models, shared by every clustering method."""

from __future__ import annotations

import numpy as np
import torch
from bioimage_cpp.segmentation import relabel_sequential
from monai.utils import convert_to_tensor

from .inputs import check_background_embedding


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
    embeddings = convert_to_tensor(embeddings, track_meta=False).detach()
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
