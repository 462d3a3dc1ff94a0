from __future__ import annotations

import itertools

import numpy as np
import pytest
from monai.data.utils import dense_patch_slices

from spoco_monai.inferers import BlockGrid
from spoco_monai.inferers.block_grid import scan_interval, window_starts


def test_axis_split_exact():
    grid = BlockGrid((100,), (32,), 0.5, block_shape=(32,))
    # MONAI windows start at 0, 16, ..., 64, 68; cores are cut in the middle of window overlaps
    assert window_starts(100, 32, 16) == [0, 16, 32, 48, 64, 68]
    assert [(b.core[0].start, b.core[0].stop) for b in grid.blocks] == [(0, 40), (40, 72), (72, 100)]
    assert [(b.extent[0].start, b.extent[0].stop) for b in grid.blocks] == [(0, 48), (32, 80), (64, 100)]
    assert [b.window_starts[0] for b in grid.blocks] == [(0, 16), (0, 16), (0, 4)]


@pytest.mark.parametrize(
    "shape, roi, overlap, block, halo",
    [
        ((32, 64, 64), (16, 32, 32), 0.5, (16, 32, 32), None),
        ((70, 45), (16, 16), 0.25, (20, 33), 3),
        ((40, 50, 60), (16, 16, 16), 0.0, (16, 32, 16), None),
        ((10, 64), (16, 16), 0.5, (16, 16), 5),
    ],
)
def test_cores_tile_extents_hold_windows(shape, roi, overlap, block, halo):
    grid = BlockGrid(shape, roi, overlap, block, halo)
    owner = np.zeros(shape, dtype=int)
    for block_ in grid.blocks:
        owner[block_.core] += 1
        for core, extent in zip(block_.core, block_.extent):
            assert extent.start <= core.start < core.stop <= extent.stop
        covered = np.zeros([e.stop - e.start for e in block_.extent], dtype=bool)
        for starts in itertools.product(*block_.window_starts):
            covered[tuple(slice(s, s + r) for s, r in zip(starts, roi))] = True
        assert covered.all()  # windows cover the extent (possibly beyond it where padded)
    np.testing.assert_array_equal(owner, 1)


def test_halo_is_reached_between_blocks():
    grid = BlockGrid((200,), (32,), 0.5, block_shape=(32,), halo=20)
    cores = [(b.core[0].start, b.core[0].stop) for b in grid.blocks]
    extents = [(b.extent[0].start, b.extent[0].stop) for b in grid.blocks]
    inner_halos = [c[0] - e[0] for c, e in zip(cores[1:], extents[1:])] + [
        e[1] - c[1] for c, e in zip(cores[:-1], extents[:-1])
    ]
    assert min(inner_halos) >= 20


def test_blocks_run_every_monai_window_once_with_the_default_halo():
    shape, roi, overlap = (256, 256, 256), (64, 64, 64), 0.25
    grid = BlockGrid(shape, roi, overlap, block_shape=(128, 128, 128))
    monai_windows = len(dense_patch_slices(shape, roi, scan_interval(roi, overlap)))
    assert len(grid) == 8
    assert sum(block.num_windows for block in grid.blocks) == monai_windows == 125


def test_volume_smaller_than_window_is_one_block():
    grid = BlockGrid((10, 20), (16, 16), 0.5, block_shape=(8, 8))
    assert grid.shape == (1, 2)
    assert grid.blocks[0].window_starts[0] == (0,)


def test_overlapping_cores_are_the_neighbours():
    grid = BlockGrid((64, 64), (16, 16), 0.5, block_shape=(16, 16))
    assert grid.shape == (4, 4)
    centre = grid.blocks[5]  # position (1, 1)
    assert sorted(b.index for b in grid.overlapping_cores(centre)) == [0, 1, 2, 4, 6, 8, 9, 10]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"roi_size": (0, 16)}, "roi_size must be positive"),
        ({"roi_size": (16,)}, "roi_size must have 2 values"),
        ({"overlap": 1.0}, "overlap must be in"),
        ({"block_shape": (16, 0)}, "block_shape must be positive"),
        ({"halo": 0}, "halo must be positive"),
        ({"halo": 1.5}, "halo must be positive integers"),
    ],
)
def test_invalid_grid_raises(options, message):
    arguments = {"spatial_shape": (64, 64), "roi_size": (16, 16), "overlap": 0.5}
    arguments.update(options)
    with pytest.raises(ValueError, match=message):
        BlockGrid(**arguments)
