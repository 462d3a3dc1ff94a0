"""Start-up checks of a dataset, so that bad input stops a run before any training.

Call :func:`check_dataset` where a bundle config starts its run, e.g. in ``train.json``::

    "imports": ["$from spoco_monai.data import check_dataset"],
    "initialize": ["$monai.utils.set_determinism(seed=@seed)",
                   "$check_dataset(@train_datalist, @spatial_dims, reader=@reader)"]

MONAI's ``ConfigWorkflow`` evaluates ``initialize`` before it builds datasets and data loaders, so a
problem is reported before any file is cached or any network is built (MONAI shows the ``ValueError``
as the cause of its "Failed to evaluate" error). The function returns the items unchanged, so it can
also wrap a datalist where it is defined:
``"train_datalist": "$check_dataset(@datalist['training'], @spatial_dims)"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from monai.data import ImageReader
from monai.transforms import LoadImage
from monai.utils import ensure_tuple

from spoco_monai.data.readers import ArrayFileReader, HDF5Reader, TiffReader, ZarrReader, volume_file

__all__ = ["check_dataset"]

# Errors listed in one message; the rest are counted, so a broken folder does not flood the log.
_MAX_REPORTED = 20


class _VolumeInspector:
    """Reads spatial shapes (headers only with this package's readers) and label content."""

    def __init__(self, reader: ImageReader | str | type | None) -> None:
        self.loader = LoadImage(reader=reader, image_only=True, dtype=None, ensure_channel_first=True)
        self.reader = self.loader.readers[-1] if reader is not None else None
        self.own_readers = (HDF5Reader(), ZarrReader(), TiffReader())

    def _array_file_reader(self, filename: str) -> ArrayFileReader | None:
        if self.reader is not None:
            return self.reader if isinstance(self.reader, ArrayFileReader) else None
        return next((reader for reader in self.own_readers if reader.verify_suffix(filename)), None)

    def spatial_shape(self, filename: str) -> tuple[int, ...]:
        reader = self._array_file_reader(filename)
        if reader is not None:
            return reader.read(filename).spatial_shape
        # MONAI's readers have no header-only interface: read the volume.
        return tuple(self.loader(filename).shape[1:])

    def has_object(self, filename: str) -> bool:
        reader = self._array_file_reader(filename)
        label = reader.load(reader.read(filename)) if reader is not None else self.loader(filename)
        return bool((np.asarray(label) > 0).any())


def _files(value: Any) -> list[str]:
    return [str(name) for name in ensure_tuple(value)]


def _check_item(
    index: int,
    item: Mapping,
    spatial_dims: int,
    inspector: _VolumeInspector,
    image_key: str,
    label_key: str | None,
    require_objects: bool,
) -> list[str]:
    if not isinstance(item, Mapping) or image_key not in item:
        return [f"item {index}: expected a dict with key {image_key!r}, found {item!r}"]
    if label_key is not None and label_key not in item:
        return [f"item {index} ({item[image_key]}): no {label_key!r} entry"]
    keys = (image_key,) if label_key is None else (image_key, label_key)
    files = {key: _files(item[key]) for key in keys}
    missing = [name for key in keys for name in files[key] if not volume_file(name).exists()]
    if missing:
        return [f"item {index}: file not found: {name}" for name in missing]

    shapes = {}
    for key in keys:
        try:
            shapes[key] = inspector.spatial_shape(files[key][0])
        except (OSError, ValueError, RuntimeError) as error:
            return [f"item {index}: cannot read {files[key][0]}: {error}"]
    image_shape = shapes[image_key]
    if len(image_shape) != spatial_dims:
        return [
            f"{files[image_key][0]}: image is {len(image_shape)}D (spatial shape {image_shape}) but the "
            f"configuration has spatial_dims={spatial_dims}; set spatial_dims={len(image_shape)} or use "
            f"{spatial_dims}D data"
        ]
    if label_key is None:
        return []
    if shapes[label_key] != image_shape:
        return [
            f"{files[label_key][0]}: label spatial shape {shapes[label_key]} differs from image "
            f"{files[image_key][0]} spatial shape {image_shape}"
        ]
    if require_objects and not inspector.has_object(files[label_key][0]):
        return [f"{files[label_key][0]}: label has no object (no id > 0); every label needs at least one object"]
    return []


def check_dataset(
    datalist_items: Sequence[Mapping],
    spatial_dims: int,
    reader: ImageReader | str | type | None = None,
    image_key: str = "image",
    label_key: str | None = "label",
    require_objects: bool = True,
) -> Sequence[Mapping]:
    """Check a datalist before training and raise one clear error listing every problem found.

    For every item: the files exist (a ``:dataset`` suffix is removed before looking), the image has
    ``spatial_dims`` spatial axes, the label has the image's spatial shape, and the label holds at least
    one object (an id > 0). Shapes come from file headers with this package's HDF5/zarr/TIFF readers;
    other formats (NIfTI, ITK) are read in full by MONAI's readers. The object check reads the label.
    With multi-file items (several channels), the first file of each key is inspected.

    Args:
        datalist_items: items such as ``[{"image": "a.tif", "label": "a_label.tif"}, ...]``.
        spatial_dims: 2 or 3, the dimensionality the run is configured for.
        reader: the reader the run loads with (instance, class, or name as ``LoadImage`` accepts); None
            picks this package's reader from the file suffix, else MONAI's default readers.
        image_key: item key of the image.
        label_key: item key of the label; None checks images only (inference).
        require_objects: whether a label without any object is an error.

    Returns:
        ``datalist_items``, unchanged.

    Raises:
        ValueError: when the datalist is empty, ``spatial_dims`` is not 2 or 3, or an item has a missing
            file, the wrong dimensionality, an image/label shape mismatch or a label without objects.
            The message names each offending file.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if isinstance(datalist_items, (str, bytes, Mapping)) or len(datalist_items) == 0:
        raise ValueError(
            f"empty or invalid datalist: expected a non-empty list of {{{image_key!r}: ..., {label_key!r}: ...}} "
            f"items, found {datalist_items!r}"
        )
    inspector = _VolumeInspector(reader)
    errors = [
        error
        for index, item in enumerate(datalist_items)
        for error in _check_item(index, item, spatial_dims, inspector, image_key, label_key, require_objects)
    ]
    if errors:
        listed = "\n  ".join(errors[:_MAX_REPORTED])
        more = f"\n  ... and {len(errors) - _MAX_REPORTED} more" if len(errors) > _MAX_REPORTED else ""
        raise ValueError(f"dataset check failed for {len(errors)} problem(s):\n  {listed}{more}")
    return datalist_items
