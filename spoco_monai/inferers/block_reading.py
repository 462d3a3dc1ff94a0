"""Reading of the blocks' extents from a volume, whole storage chunks at a time, each chunk decoded about once."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .block_grid import Block, relative

# decoded chunks kept for later blocks, at most this many bytes: about what the blended affinities of one
# default-sized block take, so the cache at most doubles that part of the memory
CHUNK_CACHE_BYTES = 2**28


class BlockReader:
    """The extents of planned blocks, read in their order, as ``(C, *extent)`` arrays.

    A chunked file (zarr, chunked HDF5, tiled TIFF) decodes a whole chunk to give any part of it, and
    neighbouring extents share chunks (their halos overlap, and a chunk usually holds parts of several blocks),
    so reading every extent on its own decodes most chunks several times. The reader reads whole chunks instead
    and keeps those that later blocks need, at most ``max_cached_bytes`` of them: when the cache is full, the
    chunk needed furthest in the future goes first (the best choice for a known order of reads), and a chunk
    that no later block needs goes at once. A volume without a ``chunks`` attribute (an array, a tensor, a
    memory-mapped file) is sliced directly.

    Args:
        volume: ``(C, *S)`` or ``(*S)`` array, tensor or :class:`~spoco_monai.data.volume_io.LazyVolume`; its
            ``chunks`` attribute (shape of the storage chunks, all axes), where it has one, decides the reads.
        has_channels: whether ``volume`` has a leading channel axis.
        blocks: the blocks to read, in the order in which they are read.
        max_cached_bytes: most bytes of decoded chunks kept between reads.
    """

    def __init__(
        self, volume: Any, has_channels: bool, blocks: Sequence[Block], max_cached_bytes: int = CHUNK_CACHE_BYTES
    ) -> None:
        self._volume = volume
        self._has_channels = has_channels
        self._max_cached_bytes = max_cached_bytes
        self._blocks = list(blocks)
        self._position = 0
        chunks = getattr(volume, "chunks", None)
        dims = len(volume.shape) - int(has_channels)
        self._spatial_shape = tuple(int(s) for s in volume.shape[-dims:])
        self._chunk_shape = None if chunks is None else tuple(int(c) for c in chunks[-dims:])
        # per chunk, the positions (in read order) of the blocks that need it
        self._uses: dict[tuple[int, ...], list[int]] = {}
        for position, block in enumerate(blocks if self._chunk_shape is not None else ()):
            for chunk in self._chunks_of(block.extent):
                self._uses.setdefault(chunk, []).append(position)
        self._cache: dict[tuple[int, ...], np.ndarray] = {}
        self._cached_bytes = 0

    def __call__(self, block: Block) -> np.ndarray | torch.Tensor:
        """The ``(C, *extent)`` values of ``block``'s extent.

        Raises:
            ValueError: if ``block`` is not the next of the planned blocks.
        """
        position = self._position
        if position >= len(self._blocks) or self._blocks[position] != block:
            raise ValueError(f"block {block.index} is not the next planned block; read the blocks in their order.")
        self._position += 1
        if self._chunk_shape is None:
            return self._read(block.extent)
        region: np.ndarray | None = None
        for chunk in self._chunks_of(block.extent):
            values = self._cache.pop(chunk, None)
            if values is None:
                values = np.asarray(self._read(self._chunk_slices(chunk)))
            else:
                self._cached_bytes -= values.nbytes
            if region is None:
                region = np.empty((values.shape[0], *(e.stop - e.start for e in block.extent)), dtype=values.dtype)
            chunk_slices = self._chunk_slices(chunk)
            shared = [slice(max(e.start, c.start), min(e.stop, c.stop)) for e, c in zip(block.extent, chunk_slices)]
            target, source = relative(shared, block.extent), relative(shared, chunk_slices)
            region[(slice(None), *target)] = values[(slice(None), *source)]
            if self._next_use(chunk, position) is not None:
                self._cache[chunk] = values
                self._cached_bytes += values.nbytes
        while self._cached_bytes > self._max_cached_bytes:
            furthest = max(self._cache, key=lambda chunk: self._next_use(chunk, position))
            self._cached_bytes -= self._cache.pop(furthest).nbytes
        return region

    def _read(self, slices: tuple[slice, ...]) -> np.ndarray | torch.Tensor:
        return self._volume[(slice(None), *slices)] if self._has_channels else self._volume[slices][None]

    def _chunks_of(self, extent: tuple[slice, ...]) -> list[tuple[int, ...]]:
        ranges = [range(e.start // c, (e.stop - 1) // c + 1) for e, c in zip(extent, self._chunk_shape)]
        return list(itertools.product(*ranges))

    def _chunk_slices(self, chunk: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(
            slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(chunk, self._chunk_shape, self._spatial_shape)
        )

    def _next_use(self, chunk: tuple[int, ...], position: int) -> int | None:
        uses = self._uses[chunk]
        later = bisect.bisect_right(uses, position)
        return uses[later] if later < len(uses) else None

