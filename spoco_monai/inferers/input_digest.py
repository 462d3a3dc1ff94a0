"""What a stored block was computed from: a digest of the image values it read, checked before a resumed run
reuses the block, so that a changed input is never stitched together with labels of the old one."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import torch

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


def discard_changed_blocks(store: BlockStore, digests: Iterable[tuple[int, str]]) -> set[int]:
    """Discard the stored blocks whose input has changed since they were stored.

    A stored block holds the labels of its own extent only (blocks are matched anew by every run), so a change
    concerns the blocks that read the changed values and no other.

    Args:
        store: the finished blocks.
        digests: ``(index, digest)`` of every stored block, from its extent as the run reads it now
            (:func:`input_digest`); a record without a digest counts as changed.

    Returns:
        the indices of the blocks discarded.
    """
    discarded = {index for index, digest in digests if store.record(index).input_digest != digest}
    for index in discarded:
        store.discard(index)
    return discarded
