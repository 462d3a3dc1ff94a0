"""What a stored block was computed from: a digest of the image values it read, checked before a resumed run
reuses the block, so that a changed input is never stitched together with labels of the old one."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from .block_grid import BlockGrid
from .block_reading import BlockReader
from .block_store import BlockStore

# 128 bits: a collision by chance is out of reach, and the records stay short
DIGEST_BYTES = 16


def input_digest(region: np.ndarray | torch.Tensor) -> str:
    """Hexadecimal BLAKE2b digest of a block's ``(C, *extent)`` image values, with their dtype and shape.

    Args:
        region: the values, as :class:`~.block_reading.BlockReader` reads them.
    """
    if isinstance(region, torch.Tensor):
        values = region.detach().cpu().contiguous()
        layout, data = f"{values.dtype}{tuple(values.shape)}", values.reshape(-1).view(torch.uint8).numpy()
    else:
        data = np.ascontiguousarray(region)
        layout = f"{data.dtype.str}{data.shape}"
    digest = hashlib.blake2b(layout.encode(), digest_size=DIGEST_BYTES)
    digest.update(data)
    return digest.hexdigest()


def discard_changed_blocks(
    volume: Any, has_channels: bool, grid: BlockGrid, store: BlockStore, matched: bool
) -> set[int]:
    """Discard the stored blocks whose input has changed since they were stored, and the blocks stitched to them.

    Every stored block's extent is read again (whole storage chunks at a time, as the run reads them) and its
    digest compared with the one its record holds; a record without one counts as changed. A block that was
    matched against the core of a discarded block (or of one the store lacks) is discarded as well: its matches
    name labels that will change.

    Args:
        volume: the image, as the run reads it.
        has_channels: whether ``volume`` has a leading channel axis.
        grid: the block grid.
        store: the finished blocks.
        matched: whether the store's blocks were matched against the cores of earlier blocks when stored
            (:func:`~.stitching.save_matched`); ``False`` for blocks stored alone.

    Returns:
        the indices of the blocks discarded.
    """
    finished = store.finished()
    stored = [block for block in grid.blocks if block.index in finished]
    reader = BlockReader(volume, has_channels, stored)
    discarded: set[int] = set()
    for block in stored:
        changed = store.record(block.index).input_digest != input_digest(reader(block))
        if changed or (matched and any(
            other.index < block.index and (other.index in discarded or other.index not in finished)
            for other in grid.overlapping_cores(block)
        )):
            store.discard(block.index)
            discarded.add(block.index)
    return discarded
