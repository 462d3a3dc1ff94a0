"""Pixel chunks: bounded memory for terms that relate many centres to every pixel."""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["CHUNK_ELEMENTS", "pixel_chunk_size", "pixel_slices"]

#: Largest number of elements of one (B, M, chunk) intermediate tensor (16 MiB in float32).
CHUNK_ELEMENTS = 2**22


def pixel_chunk_size(batch: int, width: int, elements: int = CHUNK_ELEMENTS) -> int:
    """Pixels per chunk so that a (batch, width, chunk) tensor has at most ``elements`` elements."""
    return max(1, elements // (batch * max(width, 1)))


def pixel_slices(num_pixels: int, chunk_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``chunk_size`` pixels covering 0..num_pixels-1."""
    for start in range(0, num_pixels, chunk_size):
        yield slice(start, min(start + chunk_size, num_pixels))
