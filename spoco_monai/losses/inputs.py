"""Checks of loss inputs, done once where they enter a loss module."""

from __future__ import annotations

import torch

__all__ = ["flatten_loss_inputs"]


def _check_embeddings(name: str, embeddings: object) -> torch.Tensor:
    if not isinstance(embeddings, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, found {type(embeddings).__name__}.")
    if not embeddings.is_floating_point():
        raise TypeError(f"{name} must have a floating point dtype, found {embeddings.dtype}.")
    if embeddings.ndim not in (4, 5):
        raise ValueError(
            f"{name} must have shape (B, E, H, W) or (B, E, D, H, W) (4 or 5 dimensions), "
            f"found {embeddings.ndim} dimensions with shape {tuple(embeddings.shape)}."
        )
    if embeddings.shape[0] == 0 or embeddings.shape[1] == 0 or embeddings.shape[2:].numel() == 0:
        raise ValueError(
            f"{name} must have non-empty batch, embedding and spatial sizes, found {tuple(embeddings.shape)}."
        )
    return embeddings


def flatten_loss_inputs(
    embeddings: object, target: object, teacher_embeddings: object | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Validate the inputs of a SPOCO loss and flatten their spatial axes.

    The computation dtype is float64 for float64 embeddings and float32 otherwise (half precision inputs, e.g.
    under autocast, are promoted so that the losses are always computed in at least float32).

    Args:
        embeddings: (B, E, *S) floating point tensor, S with 2 or 3 spatial axes.
        target: (B, 1, *S) or (B, *S) integer tensor: id > 0 object, 0 unlabeled, -1 ignore.
        teacher_embeddings: None or a tensor of the same shape as ``embeddings``.

    Returns:
        embeddings (B, E, N), target (B, N) int64 and teacher embeddings (B, E, N) detached (or None), N = prod(S).

    Raises:
        TypeError: non-tensor inputs, non-floating embeddings, float or bool target.
        ValueError: wrong number of dimensions, batch or spatial size mismatch, ids below -1, device mismatch,
            teacher shape unlike the student's.
    """
    embeddings = _check_embeddings("embeddings", embeddings)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, found {type(target).__name__}.")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"target must have an integer dtype (ids > 0, 0 unlabeled, -1 ignore), found {target.dtype}.")
    batch, spatial = embeddings.shape[0], tuple(embeddings.shape[2:])
    if target.ndim == embeddings.ndim and target.shape[1] == 1:
        target = target[:, 0]
    elif target.ndim != embeddings.ndim - 1:
        raise ValueError(
            f"target must have shape (B, 1, *S) or (B, *S) = {(batch, 1, *spatial)} or {(batch, *spatial)} "
            f"for embeddings of shape {tuple(embeddings.shape)}, found {tuple(target.shape)}."
        )
    if target.shape[0] != batch:
        raise ValueError(f"batch size mismatch: embeddings have {batch} samples, target has {target.shape[0]}.")
    if tuple(target.shape[1:]) != spatial:
        raise ValueError(f"spatial shape mismatch: embeddings have {spatial}, target has {tuple(target.shape[1:])}.")
    if target.device != embeddings.device:
        raise ValueError(f"device mismatch: embeddings on {embeddings.device}, target on {target.device}.")
    lowest = int(target.min())
    if lowest < -1:
        raise ValueError(f"target ids must be >= -1 (-1 = ignore, 0 = unlabeled, > 0 = object), found {lowest}.")
    dtype = torch.float64 if embeddings.dtype == torch.float64 else torch.float32
    flat_embeddings = _pixels_contiguous(embeddings.to(dtype).flatten(2))
    flat_target = target.to(torch.int64).flatten(1)
    if teacher_embeddings is None:
        return flat_embeddings, flat_target, None
    teacher = _check_embeddings("teacher_embeddings", teacher_embeddings)
    if teacher.shape != embeddings.shape:
        raise ValueError(
            f"teacher_embeddings must have the student's shape {tuple(embeddings.shape)}, found {tuple(teacher.shape)}."
        )
    if teacher.device != embeddings.device:
        raise ValueError(f"device mismatch: embeddings on {embeddings.device}, teacher on {teacher.device}.")
    return flat_embeddings, flat_target, _pixels_contiguous(teacher.detach().to(dtype).flatten(2))


def _pixels_contiguous(flat: torch.Tensor) -> torch.Tensor:
    """``flat`` (B, E, N), copied where its pixels are not adjacent in memory (channels-last networks' output): the
    terms work pixel chunk by pixel chunk, which would be strided gathers there."""
    return flat if flat.stride(-1) == 1 else flat.contiguous()
