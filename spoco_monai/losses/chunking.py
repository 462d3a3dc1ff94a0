"""Pixel chunks: bounded memory for terms that relate many centres to every pixel."""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["CACHE_ELEMENTS", "CHUNK_ELEMENTS", "pixel_chunk_size", "pixel_slices"]

#: Largest number of elements of one (B, M, chunk) intermediate tensor (16 MiB in float32).
CHUNK_ELEMENTS = 2**22

#: Elements of a (B, M, chunk) tensor that stays in a core's L2 cache (1 MiB in float32). The (centres x pixels)
#: terms make several elementwise passes over each chunk; when the chunk stays in cache, those passes cost a
#: fraction of what they cost from main memory, while the matrix products still see chunks wide enough to be
#: efficient.
CACHE_ELEMENTS = 2**18


def pixel_chunk_size(batch: int, width: int, elements: int = CHUNK_ELEMENTS) -> int:
    """Pixels per chunk so that a (batch, width, chunk) tensor has at most ``elements`` elements."""
    return max(1, elements // (batch * max(width, 1)))


def pixel_slices(num_pixels: int, chunk_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``chunk_size`` pixels covering 0..num_pixels-1."""
    for start in range(0, num_pixels, chunk_size):
        yield slice(start, min(start + chunk_size, num_pixels))
