from __future__ import annotations

import numpy as np
import pytest
import torch

from spoco_monai.inferers import BlockGrid, BlockRecord, MemoryBlockStore
from spoco_monai.inferers.input_digest import discard_changed_blocks, input_digest

# three blocks along X: cores 0-18, 18-30, 30-48, extents 0-20, 16-32, 28-48
GRID = BlockGrid((8, 48), (8, 8), 0.5, (8, 16), None)
IMAGE = np.arange(8 * 48, dtype=np.float32).reshape(8, 48)


def test_digest_of_known_values():
    assert input_digest(np.zeros((1, 2, 2), np.uint8)) == "c67e8ddff6a3db8e4f2e910eaf01c7a4"
    assert input_digest(np.arange(4, dtype=np.float32).reshape(1, 2, 2)) == "e0c61c940a2d39dbba87d928d9dafb1b"
    assert input_digest(torch.arange(4, dtype=torch.float32).reshape(1, 2, 2)) == "8048a649efba0f128e112d7d2b2c2797"


def test_digest_tells_values_dtype_and_shape_apart():
    values = np.arange(8, dtype=np.uint8).reshape(1, 2, 4)
    changed = values.copy()
    changed[0, 1, 3] = 0
    digests = {
        input_digest(values),
        input_digest(changed),
        input_digest(values.view(np.int8)),
        input_digest(values.reshape(1, 4, 2)),
        input_digest(values[:, ::-1]),
    }
    assert len(digests) == 5
    # a view reads as the values it shows
    assert input_digest(values[:, ::-1]) == input_digest(values[:, ::-1].copy())


def _stored(image: np.ndarray, indices=(0, 1, 2)) -> MemoryBlockStore:
    store = MemoryBlockStore()
    for block in GRID.blocks:
        if block.index in indices:
            store.save(block.index, np.zeros(1, np.uint32), BlockRecord(0, 0, input_digest(image[block.extent][None])))
    return store


def _digests(image: np.ndarray, store: MemoryBlockStore) -> list[tuple[int, str]]:
    finished = store.finished()
    return [(block.index, input_digest(image[block.extent][None])) for block in GRID.blocks if block.index in finished]


@pytest.mark.parametrize(
    "changed_x, discarded",
    [
        (None, set()),
        (40, {2}),  # in block 2's extent only
        (24, {1}),  # in block 1's extent only; blocks are matched anew by every run
        (5, {0}),
        (29, {1, 2}),  # in the halos of blocks 1 and 2
    ],
)
def test_changed_blocks_are_discarded(changed_x, discarded):
    store = _stored(IMAGE)
    image = IMAGE.copy()
    if changed_x is not None:
        image[3, changed_x] = -1.0
    assert discard_changed_blocks(store, _digests(image, store)) == discarded
    assert store.finished() == {0, 1, 2} - discarded


def test_a_block_without_digest_is_discarded():
    store = _stored(IMAGE, indices=(0,))
    store.save(2, np.zeros(1, np.uint32), BlockRecord(0, 0))
    assert discard_changed_blocks(store, _digests(IMAGE, store)) == {2}
    assert store.finished() == {0}
