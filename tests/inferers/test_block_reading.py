from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import zarr

from spoco_monai.data.volume_io import open_volume
from spoco_monai.inferers import Block, BlockGrid
from spoco_monai.inferers.block_reading import BlockReader


class CountingChunkedVolume:
    """A ``(C, *S)`` array stored in chunks: counts the chunk reads and fails on reads that are not one chunk."""

    def __init__(self, values: np.ndarray, chunks: tuple[int, ...]):
        self.values, self.chunks = values, chunks
        self.shape, self.dtype = values.shape, values.dtype
        self.reads: list[tuple[int, ...]] = []

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        spatial = key[1:]
        corner = tuple(s.start // c for s, c in zip(spatial, self.chunks[1:]))
        expected = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(corner, self.chunks[1:], self.shape[1:]))
        assert spatial == expected, f"read {spatial} is not the chunk {expected}"
        self.reads.append(corner)
        return self.values[key]


def _volume(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(0).random(shape, dtype=np.float32)


@pytest.mark.parametrize("max_cached_bytes", [0, 4096, 2**30])
def test_extents_equal_direct_slicing(max_cached_bytes):
    values = _volume((2, 30, 41, 37))
    volume = CountingChunkedVolume(values, (2, 8, 16, 10))
    grid = BlockGrid(values.shape[1:], (12, 12, 12), 0.25, block_shape=9)
    reader = BlockReader(volume, True, grid.blocks, max_cached_bytes=max_cached_bytes)
    for block in grid.blocks:
        np.testing.assert_array_equal(reader(block), values[(slice(None), *block.extent)])


def test_every_chunk_is_read_once_when_the_cache_holds_them():
    volume = CountingChunkedVolume(_volume((1, 30, 41, 37)), (1, 8, 16, 10))
    grid = BlockGrid(volume.shape[1:], (12, 12, 12), 0.25, block_shape=9)
    reader = BlockReader(volume, True, grid.blocks)
    for block in grid.blocks:
        reader(block)
    assert sorted(volume.reads) == list(itertools.product(range(4), range(3), range(4)))


def test_a_full_cache_drops_the_chunk_needed_furthest_ahead():
    # one axis, three blocks of one chunk each, read in the order 0, 1, 2, 1, 0; room for one chunk
    volume = CountingChunkedVolume(_volume((1, 30)), (1, 10))
    chunk_blocks = [Block(i, (slice(10 * i, 10 * i + 10),), (slice(10 * i, 10 * i + 10),), ((0,),)) for i in range(3)]
    blocks = [chunk_blocks[i] for i in (0, 1, 2, 1, 0)]
    reader = BlockReader(volume, True, blocks, max_cached_bytes=10 * 4)
    for block in blocks:
        np.testing.assert_array_equal(reader(block), volume.values[(slice(None), *block.extent)])
    # chunk 0 (needed last) makes room for chunk 1 (needed sooner); chunk 2 is needed by no later block
    assert volume.reads == [(0,), (1,), (2,), (0,)]


def test_volumes_without_chunks_are_sliced_directly():
    values = torch.from_numpy(_volume((13, 17)))
    grid = BlockGrid(values.shape, (8, 8), 0.5, block_shape=4)
    reader = BlockReader(values, False, grid.blocks)
    for block in grid.blocks:
        assert torch.equal(reader(block), values[block.extent][None])


def test_a_zarr_volume_is_read_by_its_chunks(tmp_path):
    values = _volume((2, 24, 20))
    array = zarr.create_array(store=tmp_path / "image.zarr", shape=values.shape, chunks=(1, 16, 8), dtype="float32")
    array[:] = values
    with open_volume(tmp_path / "image.zarr") as volume:
        assert volume.chunks == (1, 16, 8)
        grid = BlockGrid(values.shape[1:], (8, 8), 0.5, block_shape=4)
        reader = BlockReader(volume, True, grid.blocks)
        for block in grid.blocks:
            np.testing.assert_array_equal(reader(block), values[(slice(None), *block.extent)])


def test_reading_out_of_order_raises():
    grid = BlockGrid((13, 17), (8, 8), 0.5, block_shape=4)
    reader = BlockReader(np.zeros((13, 17)), False, grid.blocks)
    with pytest.raises(ValueError, match="not the next planned block"):
        reader(grid.blocks[1])
