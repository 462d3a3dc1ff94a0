"""Blocks with halo, built from a global sliding-window grid, for out-of-core whole-volume inference."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from monai.data.utils import dense_patch_slices

# default block size in voxels (a 128^3 cube in 3D): large enough that the halo is a small fraction of
# the work, small enough that the block's affinity buffers and Mutex Watershed stay within a few GiB
DEFAULT_BLOCK_VOXELS = 2**21
# a whole-image window is rounded up to this multiple so that every pooling level of a U-Net (up to 5
# stride-2 levels) sees an even size
WHOLE_IMAGE_MULTIPLE = 32


@dataclass(frozen=True)
class Block:
    """One block of the grid.

    Attributes:
        index: position of the block in processing (C) order.
        core: slices (volume coordinates) of the voxels this block labels; cores tile the volume.
        extent: slices (volume coordinates) of the region the block reads and predicts: core plus halo.
        window_starts: per axis, start of every sliding window relative to ``extent`` (the windows of the
            block are their Cartesian product); where the volume is smaller than the window the single
            start is 0 in the window-sized, padded extent.
    """

    index: int
    core: tuple[slice, ...]
    extent: tuple[slice, ...]
    window_starts: tuple[tuple[int, ...], ...]

    @property
    def core_in_extent(self) -> tuple[slice, ...]:
        """Slices of the core relative to the extent."""
        return tuple(slice(c.start - e.start, c.stop - e.start) for c, e in zip(self.core, self.extent))

    @property
    def num_windows(self) -> int:
        return math.prod(len(starts) for starts in self.window_starts)


@dataclass(frozen=True)
class _AxisBlocks:
    cores: tuple[tuple[int, int], ...]
    extents: tuple[tuple[int, int], ...]
    window_starts: tuple[tuple[int, ...], ...]


class BlockGrid:
    """Split a volume into blocks with halo whose windows come from one global sliding-window grid.

    The windows are those of MONAI's ``sliding_window_inference`` on the whole volume (same starts, same
    scan interval ``int(roi * (1 - overlap))``). Along each axis consecutive windows are grouped into
    blocks; a block's extent is the union of its windows plus ``extra`` windows on each side, and the
    boundary between two cores lies in the middle of the overlap of the two windows that meet there.
    With no extra windows the blocks run every window of the global grid exactly once, so blockwise
    inference costs the network no more than whole-volume sliding-window inference, and the halo is
    half the window overlap. A larger ``halo`` adds whole windows on each side until it is reached.

    Args:
        spatial_shape: the volume's spatial shape.
        roi_size: sliding-window size, one positive integer per axis.
        overlap: fraction of overlap between neighbouring windows, in [0, 1).
        block_shape: approximate core size per axis, rounded to whole window steps (at least one window);
            ``None`` for about ``DEFAULT_BLOCK_VOXELS`` voxels per block.
        halo: minimum halo per side and axis in voxels (at least 1, the overlap in which neighbouring
            blocks are matched); ``None`` for 1, i.e. half the window overlap whenever that is larger.

    Raises:
        ValueError: for sizes that do not match the number of axes or are out of range.
    """

    def __init__(
        self,
        spatial_shape: Sequence[int],
        roi_size: Sequence[int],
        overlap: float,
        block_shape: Sequence[int] | int | None = None,
        halo: Sequence[int] | int | None = None,
    ) -> None:
        dims = len(spatial_shape)
        self.spatial_shape = positive_ints(spatial_shape, dims, "spatial shape")
        self.roi_size = positive_ints(roi_size, dims, "roi_size")
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
        if block_shape is None:
            side = round(DEFAULT_BLOCK_VOXELS ** (1 / dims))
            block_shape = (side,) * dims
        self.block_shape = positive_ints(block_shape, dims, "block_shape")
        self.halo = positive_ints(1 if halo is None else halo, dims, "halo")
        self.scan_interval = scan_interval(self.roi_size, overlap)
        axes = [
            _split_axis(size, roi, step, block, halo)
            for size, roi, step, block, halo in zip(
                self.spatial_shape, self.roi_size, self.scan_interval, self.block_shape, self.halo
            )
        ]
        self.shape = tuple(len(axis.cores) for axis in axes)
        self.blocks = [
            Block(
                index=index,
                core=tuple(slice(*axis.cores[p]) for axis, p in zip(axes, position)),
                extent=tuple(slice(*axis.extents[p]) for axis, p in zip(axes, position)),
                window_starts=tuple(axis.window_starts[p] for axis, p in zip(axes, position)),
            )
            for index, position in enumerate(itertools.product(*(range(n) for n in self.shape)))
        ]
        self._axes = axes

    def __len__(self) -> int:
        return len(self.blocks)

    def overlapping_cores(self, block: Block) -> list[Block]:
        """The other blocks whose core intersects ``block``'s extent (its neighbours across the halo)."""
        return [other for other in self.cores_in(block.extent) if other.index != block.index]

    def cores_in(self, region: Sequence[slice]) -> list[Block]:
        """The blocks whose core intersects ``region`` (slices in volume coordinates), in block order."""
        per_axis = [
            [p for p, (lo, hi) in enumerate(axis.cores) if lo < part.stop and hi > part.start]
            for axis, part in zip(self._axes, region)
        ]
        indices = [
            sum(p * math.prod(self.shape[a + 1 :]) for a, p in enumerate(position))
            for position in itertools.product(*per_axis)
        ]
        return [self.blocks[i] for i in indices]


def whole_image_window(
    spatial_shape: Sequence[int], roi_size: Sequence[int], max_voxels: int | None
) -> tuple[int, ...]:
    """The window covering the whole image (rounded up to a multiple of 32) if it has at most ``max_voxels``
    voxels, else ``roi_size``."""
    whole = tuple(-(-int(s) // WHOLE_IMAGE_MULTIPLE) * WHOLE_IMAGE_MULTIPLE for s in spatial_shape)
    if max_voxels is not None and int(np.prod(whole)) <= max_voxels:
        return whole
    return tuple(int(r) for r in roi_size)


def scan_interval(roi_size: Sequence[int], overlap: float) -> tuple[int, ...]:
    """MONAI's window step ``int(roi * (1 - overlap))`` (at least 1), so the windows are MONAI's."""
    return tuple(max(1, int(r * (1 - overlap))) for r in roi_size)


def window_starts(size: int, roi: int, step: int) -> list[int]:
    """Window starts along one axis, as in ``sliding_window_inference`` (``[0]`` when ``size <= roi``)."""
    if size <= roi:
        return [0]
    return [int(s[0].start) for s in dense_patch_slices((size,), (roi,), (step,))]


def _split_axis(size: int, roi: int, step: int, block: int, halo: int) -> _AxisBlocks:
    if size <= roi:
        return _AxisBlocks(cores=((0, size),), extents=((0, size),), window_starts=((0,),))
    starts = window_starts(size, roi, step)
    count = len(starts)
    # no block holds more windows than block_shape asks for, so its memory stays within the request
    groups = math.ceil(count / max(1, round(block / step)))
    # balanced groups of consecutive windows; each boundary cuts the overlap of the two windows in half
    first = [round(k * count / groups) for k in range(groups + 1)]
    cuts = [0] + [(starts[w - 1] + roi + starts[w]) // 2 for w in first[1:-1]] + [size]
    for extra in range(count):
        extents = [
            (starts[max(0, first[k] - extra)], starts[min(count, first[k + 1] + extra) - 1] + roi)
            for k in range(groups)
        ]
        halos = [cuts[k] - extents[k][0] for k in range(1, groups)] + [
            extents[k][1] - cuts[k + 1] for k in range(groups - 1)
        ]
        if min(halos, default=halo) >= halo:
            break
    return _AxisBlocks(
        cores=tuple((cuts[k], cuts[k + 1]) for k in range(groups)),
        extents=tuple(extents),
        window_starts=tuple(tuple(s - lo for s in starts if lo <= s and s + roi <= hi) for lo, hi in extents),
    )


def positive_ints(values: Sequence[int] | int, dims: int, name: str) -> tuple[int, ...]:
    """``values`` (one integer for every axis, or one per axis) as a tuple of ``dims`` positive integers.

    Raises:
        ValueError: for another number of values or a value that is not a positive integer; names ``name``.
    """
    values = (values,) * dims if np.ndim(values) == 0 else tuple(values)
    if len(values) != dims:
        raise ValueError(f"{name} must have {dims} values (one per spatial axis), got {len(values)}: {values}.")
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(f"{name} must be positive integers, got {values}.")
    return tuple(int(v) for v in values)


def relative(slices: Sequence[slice], origin: Sequence[slice]) -> tuple[slice, ...]:
    """``slices`` (volume coordinates) relative to the starts of ``origin``."""
    return tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(slices, origin))
