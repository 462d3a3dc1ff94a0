"""Writing the stitched labels, one block core at a time, into memory or into a volume file."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from ..data.volume_io import VolumePath, create_volume
from .block_grid import BlockGrid
from .block_store import BlockStore


def write_labels(
    grid: BlockGrid,
    store: BlockStore,
    lookups: list[np.ndarray],
    output: VolumePath | None,
    affine: np.ndarray | None = None,
    element_size: tuple[float, ...] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> np.ndarray | None:
    """Every block's core labels through its lookup to global ids, into an array or ``output``.

    Args:
        grid: the block grid.
        store: the finished blocks (local core labels).
        lookups: per block, local label -> global id (from :func:`~.stitching.global_ids`); their dtype is the
            output's.
        output: the volume to write (chunked like the block cores), or ``None`` to return the labels.
        affine: the NIfTI affine of the output (the input's), ignored by other formats.
        element_size: the voxel size of the output (the input's): the scale of an OME-Zarr output, the
            ``element_size_um`` attribute of zarr and HDF5 outputs, the OME metadata of a TIFF output.
        overwrite: replace an existing output (once the new one is complete).
        progress: show a progress bar over the blocks.

    Returns:
        the ``(*S)`` labels when ``output`` is ``None``, else ``None`` once the output is complete.
    """
    dtype = lookups[0].dtype
    with tqdm(total=len(grid.blocks), desc="write", unit="block", disable=not progress) as bar:
        if output is None:
            labels = np.zeros(grid.spatial_shape, dtype=dtype)
            for block, lookup in zip(grid.blocks, lookups):
                labels[block.core] = lookup[store.core_labels(block.index)]
                bar.update()
            return labels
        chunks = tuple(min(s, c.stop - c.start) for s, c in zip(grid.spatial_shape, grid.blocks[0].core))
        with create_volume(
            output, grid.spatial_shape, dtype, chunks=chunks, affine=affine, overwrite=overwrite,
            element_size=element_size,
        ) as target:
            for block, lookup in zip(grid.blocks, lookups):
                target[block.core] = lookup[store.core_labels(block.index)]
                bar.update()
    return None
