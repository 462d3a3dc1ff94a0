"""Writing the stitched labels region by region, each region a task: relabel the stored blocks, write the output.

The output is chunked like the block cores, but the cores (balanced groups of windows) do not all start on a chunk
boundary; two tasks writing parts of one chunk at the same time would lose one part. So every block writes the
chunks that *start* in its core (:func:`write_regions`): these regions tile the volume in whole chunks, each is
written by exactly one task, and a region takes its labels from the at most few cores it overlaps. The lower
resolution levels of an OME-Zarr output follow level by level, a task per chunk (:func:`downsample_region`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .block_grid import Block, BlockGrid, relative
from .block_store import BlockStore


def write_regions(grid: BlockGrid, chunks: Sequence[int]) -> list[tuple[tuple[slice, ...], list[Block]]]:
    """The chunk-aligned regions the blocks write, with the blocks whose cores cover each.

    Args:
        grid: the block grid.
        chunks: the output's chunk shape (spatial axes).

    Returns:
        ``(region, blocks)`` per block whose core holds the start of a chunk, in block order.
    """
    regions = []
    for block in grid.blocks:
        region = tuple(
            slice(min(size, -(-core.start // chunk) * chunk), min(size, -(-core.stop // chunk) * chunk))
            for core, chunk, size in zip(block.core, chunks, grid.spatial_shape)
        )
        if all(part.stop > part.start for part in region):
            regions.append((region, grid.cores_in(region)))
    return regions


def write_region(
    region: tuple[slice, ...], blocks: Sequence[Block], lookups: Sequence[np.ndarray], store: BlockStore, target: Any
) -> None:
    """Relabel the stored core labels that fall in ``region`` to global ids and write them to ``target``.

    Args:
        region: slices (volume coordinates) of the region.
        blocks: the blocks whose cores cover the region.
        lookups: per block, local label -> global id (from :func:`~.stitching.global_ids`); their dtype is the
            output's.
        store: the finished blocks (extent labels).
        target: the array written (a zarr array, an HDF5 dataset or a numpy array of the whole volume).
    """
    values = np.zeros(tuple(part.stop - part.start for part in region), dtype=lookups[0].dtype)
    for block, lookup in zip(blocks, lookups):
        shared = tuple(slice(max(r.start, c.start), min(r.stop, c.stop)) for r, c in zip(region, block.core))
        values[relative(shared, region)] = lookup[store.labels(block.index)[relative(shared, block.extent)]]
    target[region] = values


def chunk_regions(shape: Sequence[int], chunks: Sequence[int]) -> list[tuple[slice, ...]]:
    """The regions of the chunks of an array of ``shape`` (each written by one task)."""
    return [
        tuple(slice(start, min(start + chunk, size)) for start, chunk, size in zip(starts, chunks, shape))
        for starts in itertools.product(*(range(0, size, chunk) for size, chunk in zip(shape, chunks)))
    ]


def downsample_region(region: tuple[slice, ...], source: Any, target: Any) -> None:
    """Write ``region`` of the next resolution level ``target`` from every second voxel of ``source``.

    Labels are subsampled, not averaged: an average of two ids is a third object's id.

    Args:
        region: slices of ``target``, e.g. one of its chunks.
        source: the level above (twice the resolution along every axis; ``target``'s shape rounded up).
        target: the level written.
    """
    read = tuple(slice(2 * part.start, min(2 * part.stop, size)) for part, size in zip(region, source.shape))
    target[region] = np.asarray(source[read])[(slice(None, None, 2),) * len(region)]
