"""Sparse object masks grown inside boxes, so that the SPOCO losses train on box annotations."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type
from skimage.segmentation import watershed

from spoco_monai.transforms.grown_masks import ELEVATIONS, elevation_map
from spoco_monai.validation import check_unit_interval

__all__ = ["GrowFromBoxes", "GrowFromBoxesd"]

# marker values of one box's watershed
_OUTSIDE, _INSIDE = 1, 2


class GrowFromBoxes(Transform):
    """Grow the object of each box into a mask by a seeded watershed inside the box.

    A box says where an object is, not which of its pixels are the object's. For each box (``[id, starts...,
    stops...]``, half-open, as :class:`~spoco_monai.transforms.SimulateBoxes` draws and
    :func:`~spoco_monai.data.read_boxes_csv` reads them):

    1. the elevation is the image's gradient magnitude (``"gradient"``), the image (``"image"``, e.g. a boundary
       map) or its negative (``"inverted"``), see :func:`~spoco_monai.transforms.grown_masks.elevation_map`;
    2. a watershed over the box and a one-pixel margin around it floods from two markers: the object's, the
       central part of the box (an ellipse, or ellipsoid, with ``core`` times the box's half extent per axis), and
       the background's, the margin (a tight box's object ends at its sides, so the margin lies outside it; a box at
       the image's edge has no margin on that side);
    3. the object keeps the pixels of its basin inside the box.

    Pixels grown by two boxes are left unlabeled (0), as is everything outside the grown masks: a box annotation
    says nothing about the pixels outside it (0, unlabeled), so the SPOCO losses learn from the masks, the
    unlabeled push and the consistency term from everything else.

    Args:
        core: size of the object's marker as a fraction of the box's half extent per axis, in (0, 1).
        elevation: ``"gradient"``, ``"image"`` or ``"inverted"``.

    Raises:
        ValueError: ``core`` outside (0, 1) or an unknown ``elevation``.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, core: float = 0.5, elevation: str = "gradient") -> None:
        self.core = check_unit_interval("core", core)
        if self.core in (0.0, 1.0):
            raise ValueError(f"core must be in (0, 1), found {core}.")
        if elevation not in ELEVATIONS:
            raise ValueError(f"elevation must be one of {ELEVATIONS}, found {elevation!r}.")
        self.elevation = elevation

    def __call__(self, image: NdarrayOrTensor, boxes: NdarrayOrTensor | np.ndarray) -> np.ndarray:
        """Grow the masks.

        Args:
            image: ``(C, *S)`` image (2 or 3 spatial axes).
            boxes: ``(N, 1 + 2 * ndim)`` integer boxes ``[id, starts..., stops...]``, id > 0.

        Returns:
            ``(1, *S)`` int64 sparse labels (object id inside its mask, 0 unlabeled), of the image's type.

        Raises:
            ValueError: boxes of another dimensionality than the image, an id <= 0, or a box that is empty or
                leaves the image.
        """
        pixels = image.detach().cpu() if isinstance(image, torch.Tensor) else torch.as_tensor(image)
        pixels = pixels.float().numpy()
        shape = pixels.shape[1:]
        rows = np.asarray(boxes.cpu() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.int64)
        if rows.size == 0:
            rows = rows.reshape(0, 1 + 2 * len(shape))
        self._check(rows, shape)
        grown = self.grow(pixels, rows)[None]
        dtype = torch.int64 if isinstance(image, torch.Tensor) else np.int64
        return convert_to_dst_type(grown, image, dtype=dtype)[0]

    def _check(self, rows: np.ndarray, shape: tuple[int, ...]) -> None:
        ndim = len(shape)
        if rows.ndim != 2 or rows.shape[1] != 1 + 2 * ndim or ndim not in (2, 3):
            raise ValueError(f"expected (N, {1 + 2 * ndim}) boxes for an image of shape {shape}, found {rows.shape}.")
        for row in rows:
            starts, stops = row[1 : 1 + ndim], row[1 + ndim :]
            if row[0] <= 0 or (starts < 0).any() or (stops > np.asarray(shape)).any() or (stops <= starts).any():
                raise ValueError(
                    f"box {row.tolist()} must have an id > 0 and lie inside the image of shape {shape} with stop > "
                    "start on every axis."
                )

    def grow(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """The ``S`` int64 masks from a ``(C, *S)`` float image and checked ``(N, 1 + 2 * ndim)`` boxes."""
        shape = image.shape[1:]
        ndim = len(shape)
        elevation = elevation_map(image, self.elevation)
        grown = np.zeros(shape, dtype=np.int64)
        claimed = np.zeros(shape, dtype=np.int64)
        for row in boxes:
            starts, stops = row[1 : 1 + ndim], row[1 + ndim :]
            outer = tuple(slice(max(0, a - 1), min(n, b + 1)) for a, b, n in zip(starts, stops, shape))
            inner = tuple(slice(a - o.start, b - o.start) for a, b, o in zip(starts, stops, outer))
            markers = np.full([o.stop - o.start for o in outer], _OUTSIDE, dtype=np.int64)
            markers[inner] = 0
            grid = np.meshgrid(*[np.arange(o.start, o.stop) for o in outer], indexing="ij")
            centre = (starts + stops - 1) / 2.0
            half = np.maximum((stops - starts) / 2.0 * self.core, 0.5)
            markers[sum(((g - c) / h) ** 2 for g, c, h in zip(grid, centre, half)) <= 1.0] = _INSIDE
            basin = watershed(elevation[outer], markers) == _INSIDE
            mask = np.zeros(shape, dtype=bool)
            mask[outer] = basin
            box = tuple(slice(a, b) for a, b in zip(starts, stops))
            inside = np.zeros(shape, dtype=bool)
            inside[box] = True
            mask &= inside
            claimed += mask
            grown[mask] = row[0]
        grown[claimed > 1] = 0
        return grown


class GrowFromBoxesd(MapTransform):
    """Dictionary version of :class:`GrowFromBoxes`: masks grown from ``data[boxes_key]`` over ``data[image_key]``.

    Args:
        keys: keys the grown labels are written to (usually ``"label"``).
        image_key: key of the ``(C, *S)`` image.
        boxes_key: key of the ``(N, 1 + 2 * ndim)`` boxes.
        core, elevation: as :class:`GrowFromBoxes`.
        allow_missing_keys: don't raise if a key is missing.
    """

    backend = GrowFromBoxes.backend

    def __init__(
        self,
        keys: KeysCollection = "label",
        image_key: Hashable = "image",
        boxes_key: Hashable = "boxes",
        core: float = 0.5,
        elevation: str = "gradient",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.grow = GrowFromBoxes(core, elevation)
        self.image_key = image_key
        self.boxes_key = boxes_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.grow(d[self.image_key], d[self.boxes_key])
        return d
