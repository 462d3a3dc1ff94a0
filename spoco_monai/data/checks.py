"""Start-up checks of a dataset, so that bad input stops a run before any training.

Call :func:`check_dataset` where a bundle config starts its run, e.g. in ``train.json``::

    "imports": ["$from spoco_monai.data import check_dataset"],
    "initialize": ["$monai.utils.set_determinism(seed=@seed)",
                   "$check_dataset(@train_datalist, @spatial_dims, reader=@reader)"]

MONAI's ``ConfigWorkflow`` evaluates ``initialize`` before it builds datasets and data loaders, so a
problem is reported before any file is cached or any network is built (a bundle run prints the ``ValueError``'s
message alone, see :mod:`spoco_monai.bundle_errors`). The function returns the items unchanged, so it can
also wrap a datalist where it is defined:
``"train_datalist": "$check_dataset(@datalist['training'], @spatial_dims)"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import FolderLayout, ImageReader
from monai.transforms import LoadImage
from monai.utils import ensure_tuple

from spoco_monai.data.colour import colour_advice
from spoco_monai.data.readers import ArrayFileReader, ReaderBySuffix, default_readers, volume_file
from spoco_monai.data.volume_io import UnreadableVolumeError

__all__ = ["check_dataset", "check_new_outputs", "neighbour_correlation", "noise_description"]

# Errors listed in one message; the rest are counted, so a broken folder does not flood the log.
_MAX_REPORTED = 20
# An image whose neighbouring values correlate less than this along every axis holds no picture of a sample: white
# noise gives 0 (+- 1 / sqrt(pairs)), the noisiest real volumes used here 0.5 (confocal nuclei) and more.
_MIN_NEIGHBOUR_CORRELATION = 0.05
# fewer neighbouring pairs than this along every axis leave the correlation too uncertain to judge (+- 0.01)
_MIN_PAIRS = 10_000
# pairs used per axis at most (rows of the image drawn at a regular step), so huge volumes are judged quickly
_MAX_PAIRS = 4_000_000


class _VolumeInspector:
    """Reads spatial shapes (headers only with this package's readers) and label content."""

    def __init__(self, reader: ImageReader | str | type | list | None) -> None:
        self.loader = LoadImage(
            reader=default_readers() if reader is None else reader, image_only=True, dtype=None,
            ensure_channel_first=True,
        )
        # LoadImage tries the readers registered last first: the given ones, then MONAI's
        self.readers = self.loader.readers[::-1]

    def _array_file_reader(self, filename: str) -> ArrayFileReader | None:
        reader = next((reader for reader in self.readers if reader.verify_suffix(filename)), None)
        if isinstance(reader, ReaderBySuffix):
            reader = reader.reader_for(filename)
        return reader if isinstance(reader, ArrayFileReader) else None

    def shape(self, filename: str) -> tuple[int, tuple[int, ...]]:
        """``(channels, spatial shape)``."""
        reader = self._array_file_reader(filename)
        if reader is not None:
            handle = reader.read(filename)
            channels = 1 if handle.channel_dim is None else handle.shape[handle.channel_dim]
            return channels, handle.spatial_shape
        # MONAI's readers have no header-only interface: read the volume.
        shape = tuple(self.loader(filename).shape)
        return shape[0], shape[1:]

    def values(self, filename: str) -> np.ndarray:
        reader = self._array_file_reader(filename)
        return np.asarray(reader.load(reader.read(filename)) if reader is not None else self.loader(filename))


def _files(value: Any) -> list[str]:
    return [str(name) for name in ensure_tuple(value)]


def _read_error(name: str, error: Exception) -> str:
    if isinstance(error, UnreadableVolumeError):
        return str(error)  # names the file and the cause already
    if isinstance(error, (ValueError, FileNotFoundError)):
        return f"cannot read {name}: {error}"
    # decompression (zlib), HDF5 and NIfTI libraries raise their own types for a truncated or corrupt file
    return f"cannot read {name} ({type(error).__name__}: {error}); the file may be truncated or corrupt"


def neighbour_correlation(image: np.ndarray) -> float | None:
    """The largest Pearson correlation of neighbouring values along any axis of ``image``.

    Returns None when no axis has ``_MIN_PAIRS`` pairs of neighbours with varying values (a small or constant
    image). Along an axis with more than ``_MAX_PAIRS`` pairs, rows at a regular step are used.
    """
    values = np.asarray(image)
    correlations = []
    for axis in range(values.ndim):
        if values.shape[axis] < 2:
            continue
        rows = np.moveaxis(values, axis, -1).reshape(-1, values.shape[axis])
        if rows.shape[0] * (rows.shape[1] - 1) < _MIN_PAIRS:
            continue
        rows = rows[:: max(1, rows.shape[0] * (rows.shape[1] - 1) // _MAX_PAIRS)].astype(np.float64)
        first, second = rows[:, :-1].ravel(), rows[:, 1:].ravel()
        if first.std() > 0 and second.std() > 0:
            correlations.append(float(np.corrcoef(first, second)[0, 1]))
    return max(correlations, default=None)


def _image_problem(name: str, image: np.ndarray) -> str | None:
    if np.issubdtype(image.dtype, np.inexact) and not np.isfinite(image).all():
        count = int(image.size - np.isfinite(image).sum())
        return f"{name}: image holds {count} NaN or infinite value(s); expected finite intensities"
    noise = noise_description(image)
    return None if noise is None else f"{name}: image {noise}"


def noise_description(image: np.ndarray) -> str | None:
    """What is wrong with an image whose neighbouring values do not correlate (:func:`neighbour_correlation` below
    ``_MIN_NEIGHBOUR_CORRELATION``), the likely cause included; None for an image with a picture (or too small or
    constant to judge)."""
    correlation = neighbour_correlation(image)
    if correlation is None or correlation >= _MIN_NEIGHBOUR_CORRELATION:
        return None
    return (
        f"looks like noise: neighbouring values are uncorrelated (largest correlation {correlation:.3f} along any "
        "axis); expected a picture of a sample (microscopy images give 0.5 or more). Was it saved with a smaller "
        "data type (e.g. 16-bit intensities cut to 8 bits) or from the wrong channel?"
    )


def _label_problem(name: str, label: np.ndarray, require_objects: bool) -> str | None:
    if not (np.issubdtype(label.dtype, np.integer) or np.issubdtype(label.dtype, np.bool_)):
        if not np.issubdtype(label.dtype, np.floating) or not np.isfinite(label).all():
            return f"{name}: label has dtype {label.dtype} with non-finite or non-numeric values; expected integer ids"
        fractional = label[label != np.round(label)]
        if fractional.size:
            return (
                f"{name}: label holds non-integer values (e.g. {fractional.flat[0]:g}, dtype {label.dtype}); "
                "expected integer object ids"
            )
    if label.size and label.min() < -1:
        return (
            f"{name}: label holds values below -1 (minimum {label.min():g}); expected ids > 0 for objects, 0 for "
            "unlabeled and -1 for ignore"
        )
    if require_objects and not (label > 0).any():
        return f"{name}: label has no object (no id > 0); every label needs at least one object"
    return None


def _check_item(
    index: int,
    item: Mapping,
    spatial_dims: int,
    inspector: _VolumeInspector,
    image_key: str,
    label_key: str | None,
    require_objects: bool,
    in_channels: int | None,
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

    shapes, channels = {}, {}
    for key in keys:
        try:
            channels[key], shapes[key] = inspector.shape(files[key][0])
        except Exception as error:  # any library error here means an unreadable file
            return [f"item {index}: {_read_error(files[key][0], error)}"]
    image_shape = shapes[image_key]
    if len(image_shape) != spatial_dims:
        return [
            f"{files[image_key][0]}: image is {len(image_shape)}D (spatial shape {image_shape}) but the "
            f"configuration has spatial_dims={spatial_dims}; set spatial_dims={len(image_shape)} or use "
            f"{spatial_dims}D data"
        ]
    image_channels = sum(inspector.shape(name)[0] for name in files[image_key])
    if in_channels is not None and image_channels != in_channels:
        advice = colour_advice(image_channels, in_channels)
        return [
            f"{files[image_key][0]}: image has {image_channels} channel(s) but the network expects "
            f"in_channels={in_channels}{'' if advice is None else f'; {advice}'}"
        ]
    for name in files[image_key]:
        try:
            problem = _image_problem(name, inspector.values(name))
        except Exception as error:
            return [f"item {index}: {_read_error(name, error)}"]
        if problem:
            return [problem]
    if label_key is None:
        return []
    if shapes[label_key] != image_shape:
        return [
            f"{files[label_key][0]}: label spatial shape {shapes[label_key]} differs from image "
            f"{files[image_key][0]} spatial shape {image_shape}"
        ]
    try:
        problem = _label_problem(files[label_key][0], inspector.values(files[label_key][0]), require_objects)
    except Exception as error:
        return [f"item {index}: {_read_error(files[label_key][0], error)}"]
    return [problem] if problem else []


def check_dataset(
    datalist_items: Sequence[Mapping],
    spatial_dims: int,
    reader: ImageReader | str | type | list | None = None,
    image_key: str = "image",
    label_key: str | None = "label",
    require_objects: bool = True,
    in_channels: int | None = None,
) -> Sequence[Mapping]:
    """Check a datalist before training and raise one clear error listing every problem found.

    For every item: the files exist (a ``:dataset`` suffix is removed before looking) and can be read in full
    (a truncated or corrupt file is named), the image has ``spatial_dims`` spatial axes, ``in_channels``
    channels (all its files together), only finite values and a picture rather than noise (neighbouring values
    correlate: :func:`neighbour_correlation`), the label has the image's spatial shape, holds
    integer ids >= -1 (integer-valued floats are accepted) and at least one object (an id > 0). Shapes come
    from file headers with this package's HDF5/zarr/TIFF readers; other formats (NIfTI, ITK) are read by
    MONAI's readers. Every image file and the first label file of each item are read in full.

    Args:
        datalist_items: items such as ``[{"image": "a.tif", "label": "a_label.tif"}, ...]``.
        spatial_dims: 2 or 3, the dimensionality the run is configured for.
        reader: the reader(s) the run loads with (instance, class, name or list, as ``LoadImage`` accepts); None
            for :func:`~spoco_monai.data.default_readers`.
        image_key: item key of the image.
        label_key: item key of the label; None checks images only (inference).
        require_objects: whether a label without any object is an error.
        in_channels: channels the network expects; None skips the channel check.

    Returns:
        ``datalist_items``, unchanged.

    Raises:
        ValueError: when the datalist is empty, ``spatial_dims`` is not 2 or 3, or an item has a missing
            file, an unreadable file, the wrong dimensionality or channel count, non-finite intensities, noise,
            an image/label shape mismatch, or a label with non-integer values, values below -1 or no objects.
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
        for error in _check_item(
            index, item, spatial_dims, inspector, image_key, label_key, require_objects, in_channels
        )
    ]
    if errors:
        listed = "\n  ".join(errors[:_MAX_REPORTED])
        more = f"\n  ... and {len(errors) - _MAX_REPORTED} more" if len(errors) > _MAX_REPORTED else ""
        raise ValueError(f"dataset check failed for {len(errors)} problem(s):\n  {listed}{more}")
    return datalist_items


def check_new_outputs(
    datalist_items: Sequence[Mapping],
    output_dir: str,
    output_postfix: str,
    output_ext: str,
    overwrite: bool = False,
    image_key: str = "image",
    separate_folder: bool = False,
) -> Sequence[Mapping]:
    """Check, before inference, that no output ``SaveImaged`` would write for these items exists already.

    The file names are MONAI's (``FolderLayout``, as ``SaveImaged`` builds them with the same arguments), so the
    check and the writer agree.

    Args:
        datalist_items: the inference items, e.g. ``[{"image": "a.tif"}]``.
        output_dir, output_postfix, output_ext, separate_folder: the ``SaveImaged`` arguments.
        overwrite: allow replacing existing outputs.

    Returns:
        ``datalist_items``, unchanged.

    Raises:
        FileExistsError: an output exists and ``overwrite`` is False; the message names each one.
    """
    if overwrite:
        return datalist_items
    layout = FolderLayout(
        output_dir=output_dir, postfix=output_postfix, extension=output_ext, parent=separate_folder, makedirs=False
    )
    existing = [
        layout.filename(subject=name)
        for item in datalist_items
        for name in _files(item[image_key])[:1]
        if Path(layout.filename(subject=name)).exists()
    ]
    if existing:
        listed = ", ".join(str(path) for path in existing[:_MAX_REPORTED])
        more = f" and {len(existing) - _MAX_REPORTED} more" if len(existing) > _MAX_REPORTED else ""
        raise FileExistsError(
            f"{len(existing)} inference output(s) already exist: {listed}{more}; pass --overwrite True to replace "
            "them, or choose another --output_dir."
        )
    return datalist_items
