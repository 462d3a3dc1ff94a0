"""Crop each datalist item to its own region: the part of a volume a training or a report uses."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform, SpatialCrop

__all__ = ["ItemRegionCropd", "region_slices"]


def region_slices(region: Sequence[Sequence[int | None] | None], spatial_dims: int) -> tuple[slice, ...]:
    """The slices of a region written as one ``[start, stop]`` pair per spatial axis (None: the whole axis).

    ``[[0, 63], null, [100, null]]`` is ``(slice(0, 63), slice(None), slice(100, None))``: the form a datalist
    JSON file can hold.

    Raises:
        ValueError: not one pair (or None) per spatial axis.
    """
    if isinstance(region, (str, bytes)) or len(region) != spatial_dims:
        raise ValueError(f"expected one [start, stop] pair (or null) per spatial axis ({spatial_dims}), found {region!r}")
    slices = []
    for bounds in region:
        if bounds is None:
            slices.append(slice(None))
            continue
        if isinstance(bounds, (str, bytes)) or len(bounds) != 2:
            raise ValueError(f"expected one [start, stop] pair (or null) per spatial axis, found {bounds!r} in {region!r}")
        slices.append(slice(*bounds))
    return tuple(slices)


class ItemRegionCropd(MapTransform):
    """Crop ``keys`` to the item's ``region`` entry when it has one, else to ``roi_slices``.

    One run can then train on the first half of one volume and the second half of another: each datalist item
    says which part of its files it uses, e.g. ``{"image": "a.h5:raw", "label": "a.h5:label", "region": [null,
    [0, 125], null]}``. The ``region`` entry is removed from the output.

    Args:
        keys: keys of the arrays to crop (channel first).
        roi_slices: the spatial slices of items without a region; None keeps them whole.
        region_key: the item entry holding the region (see :func:`region_slices`).

    Raises:
        ValueError: (when called) a region that is not one pair per spatial axis or that leaves nothing of an
            array; the message names the item's files.
    """

    def __init__(
        self, keys: KeysCollection, roi_slices: Sequence[slice] | None = None, region_key: str = "region"
    ) -> None:
        super().__init__(keys)
        self.roi_slices = None if roi_slices is None else tuple(roi_slices)
        self.region_key = region_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        region = d.pop(self.region_key, None)
        for key in self.key_iterator(d):
            spatial_dims = d[key].ndim - 1
            try:
                slices = self.roi_slices if region is None else region_slices(region, spatial_dims)
            except ValueError as error:
                raise ValueError(f"{self._name(data)}: {self.region_key} {error}") from None
            if slices is None:
                continue
            cropped = SpatialCrop(roi_slices=slices)(d[key])
            if min(cropped.shape[1:], default=0) == 0:
                raise ValueError(
                    f"{self._name(data)}: the region {region if region is not None else slices} leaves nothing of "
                    f"its {tuple(d[key].shape[1:])} {key}"
                )
            d[key] = cropped
        return d

    def _name(self, data: Mapping[Hashable, Any]) -> str:
        """The item's files, for error messages."""
        return ", ".join(
            str(getattr(data[key], "meta", {}).get("filename_or_obj", key)) for key in self.key_iterator(dict(data))
        )
