"""Pixel chunks: bounded memory for terms that relate many centres to every pixel."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.checkpoint import checkpoint

__all__ = ["CHUNK_ELEMENTS", "pixel_chunk_size", "pixel_slices", "checkpointed_chunk_sum"]

#: Largest number of elements of one (B, M, chunk) intermediate tensor (16 MiB in float32).
CHUNK_ELEMENTS = 2**22


def pixel_chunk_size(batch: int, width: int) -> int:
    """Pixels per chunk so that a (batch, width, chunk) tensor has at most ``CHUNK_ELEMENTS`` elements."""
    return max(1, CHUNK_ELEMENTS // (batch * max(width, 1)))


def pixel_slices(num_pixels: int, chunk_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``chunk_size`` pixels covering 0..num_pixels-1."""
    for start in range(0, num_pixels, chunk_size):
        yield slice(start, min(start + chunk_size, num_pixels))


def checkpointed_chunk_sum(
    fn: Callable[..., torch.Tensor],
    pixel_tensors: Sequence[torch.Tensor],
    shared: Sequence[torch.Tensor],
    chunk_size: int,
) -> torch.Tensor:
    """Sum ``fn(*pixel_tensor_chunks, *shared)`` over chunks of the last (pixel) axis of ``pixel_tensors``.

    Each chunk is recomputed in the backward pass (activation checkpointing), so the memory held for the
    backward pass is bounded by one chunk instead of growing with the patch.

    Args:
        fn: maps one chunk to a partial sum whose shape does not depend on the chunk.
        pixel_tensors: (..., N) tensors, split along their last axis.
        shared: tensors passed whole to every call.
        chunk_size: pixels per chunk.
    """
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (*pixel_tensors, *shared))
    total = None
    for chunk in zip(*(t.split(chunk_size, dim=-1) for t in pixel_tensors)):
        args = (*chunk, *shared)
        partial_sum = checkpoint(fn, *args, use_reentrant=False, preserve_rng_state=False) if needs_grad else fn(*args)
        total = partial_sum if total is None else total + partial_sum
    return total
