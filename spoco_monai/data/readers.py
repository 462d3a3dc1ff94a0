"""MONAI image readers for HDF5, zarr and TIFF files, for ``LoadImaged(reader=...)``, and the default reader list.

MONAI reads NIfTI and ITK formats itself; these readers add the microscopy containers. Nothing is
registered globally: pass an instance (or the dotted class name) to ``LoadImage``/``LoadImaged``, or the
list of :func:`default_readers`, which bundle configs, dataset checks and the figure tool all use::

    LoadImaged(keys=["image", "label"], reader=HDF5Reader())   # items {"image": "a.h5:raw", "label": "a.h5:label"}
    LoadImaged(keys="image", reader=HDF5Reader(dataset="raw"))  # items {"image": "a.h5"}
    # in a bundle config: {"_target_": "LoadImaged", "keys": ["image", "label"],
    #                      "reader": "$spoco_monai.data.default_readers()"}

The readers are a thin layer over :mod:`spoco_monai.data.volume_io`, the one place that parses volume paths,
opens files and decides which axis holds channels, so these readers, the command line and
:func:`~spoco_monai.inferers.segment_volume` read every file alike. Arrays come back in the order in which
they are stored, (Z, Y, X) or (Y, X), with an identity affine (unlike MONAI's PNG reader, no axes are swapped),
so an image and its label read by the same reader always align; a channel axis the file declares (a TIFF ``C``
axis or RGB samples) comes first and is reported as ``original_channel_dim`` 0. Without one,
``original_channel_dim`` is NaN ("no channel") and ``EnsureChannelFirstd`` adds a channel axis of size 1.

``read`` opens the file only to read its header and returns :class:`VolumeHandle` objects; the voxels are
read by ``get_data``. This keeps shape checks cheap (:func:`spoco_monai.data.check_dataset`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import PathLike
from monai.data import ImageReader, NibabelReader
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

from spoco_monai.data.volume_io import open_volume, parse_volume_path, volume_format

__all__ = [
    "default_readers",
    "volume_file",
    "VolumeHandle",
    "ArrayFileReader",
    "HDF5Reader",
    "ZarrReader",
    "TiffReader",
    "ImageFileReader",
    "ReaderBySuffix",
]


def default_readers() -> list[ImageReader]:
    """The reader list of every config and tool: one :class:`ReaderBySuffix` (HDF5, zarr, TIFF, PNG/JPEG, NIfTI).

    ``LoadImage`` given several readers tries each in turn and logs every one that fails ("NibabelReader: unable
    to load ..."); the one reader here picks the right one from the suffix, so a load logs nothing. ``LoadImage``
    falls back to MONAI's own readers for other formats (ITK's ``.mha``, ``.nrrd``, ...).
    """
    return [ReaderBySuffix()]


def volume_file(name: PathLike) -> Path:
    """The file (or zarr folder) holding the volume at ``name``: a ``:dataset`` suffix is removed.

    Args:
        name: e.g. ``"a.h5:raw"``, ``"a.h5"``, ``"b.zarr:raw"``, ``"c.nii.gz"``, ``"d.mha"``.

    Returns:
        The path on disk (``name`` itself for formats only MONAI's readers know, e.g. ``".mha"``).
    """
    text = os.fspath(name)
    return parse_volume_path(text).file if volume_format(text) else Path(text)


@dataclass(frozen=True)
class VolumeHandle:
    """A volume whose header has been read, its voxels not yet.

    Attributes:
        filename: the path as given (e.g. ``"a.h5"``).
        path: the volume path as :func:`spoco_monai.data.volume_io.open_volume` reads it, with the dataset
            chosen by the reader (e.g. ``"a.h5:raw"``).
        shape: the array shape, channel axis included.
        dtype: the stored data type.
        channel_dim: the channel axis in ``shape``; None when the volume has no channel axis.
    """

    filename: str
    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    channel_dim: int | None

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The shape without the channel axis."""
        return tuple(s for axis, s in enumerate(self.shape) if axis != self.channel_dim)


class ArrayFileReader(ImageReader):
    """Base of the readers here: suffix check, header-only ``read``, MONAI metadata in ``get_data``.

    Files are opened through :func:`spoco_monai.data.volume_io.open_volume`, which reads lazily.

    Args:
        channel_dim: None lets the file decide (see :class:`~spoco_monai.data.volume_io.LazyVolume`: no channel
            for HDF5/zarr; for TIFF, a ``C`` axis or trailing colour samples, moved first); ``"no_channel"`` forces
            no channel; an int names the channel axis of the array as :func:`~spoco_monai.data.volume_io.open_volume`
            exposes it.
    """

    file_format: str = ""

    def __init__(self, channel_dim: str | int | None = None) -> None:
        super().__init__()
        if not (channel_dim is None or channel_dim == "no_channel" or isinstance(channel_dim, int)):
            raise ValueError(f"channel_dim must be None, 'no_channel' or an int, got {channel_dim!r}")
        self.channel_dim = channel_dim

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """Whether every path is in this reader's format (judged from its suffix)."""
        return all(volume_format(os.fspath(name)) == self.file_format for name in ensure_tuple(filename))

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> VolumeHandle | list[VolumeHandle]:
        """Read the headers of one or several files (several are stacked as channels by ``get_data``).

        Args:
            data: a path or a sequence of paths; HDF5/zarr paths may end with ``:dataset``.
            kwargs: unused, accepted for the ``ImageReader`` interface.

        Returns:
            One :class:`VolumeHandle` per path (a single handle for a single path).

        Raises:
            FileNotFoundError: when a file or dataset does not exist.
            ValueError: when the path is not in this reader's format or names no dataset in a container
                holding several.
        """
        handles = []
        for name in map(os.fspath, ensure_tuple(data)):
            if volume_format(name) != self.file_format:
                raise ValueError(f"{type(self).__name__} reads {self.file_format} files, got {name}")
            path = self._volume_path(name)
            with open_volume(path) as volume:
                shape, dtype = tuple(volume.shape), volume.dtype
                channel_dim = self._resolve_channel_dim(len(shape), volume.channel_dim)
            handles.append(VolumeHandle(name, path, shape, dtype, channel_dim))
        return handles if len(handles) > 1 else handles[0]

    def load(self, handle: VolumeHandle) -> np.ndarray:
        """Read the voxels of a volume described by ``read`` (stored shape and dtype)."""
        with open_volume(handle.path) as volume:
            array = np.asarray(volume)
        # Memory-mapped TIFFs come back read-only, which torch cannot wrap safely.
        return array if array.flags.writeable else array.copy()

    def get_data(self, img: VolumeHandle | Sequence[VolumeHandle]) -> tuple[np.ndarray, dict]:
        """Read the voxels and build MONAI's metadata.

        Args:
            img: the handle(s) returned by ``read``.

        Returns:
            ``(array, meta)``: the stored array (several files are stacked on a new first axis, or
            concatenated along their channel axis); meta with ``affine``/``original_affine`` (identity),
            ``spatial_shape``, ``original_channel_dim`` (NaN for no channel), ``space`` and
            ``filename_or_obj``.

        Raises:
            ValueError: when several files do not share one spatial shape.
        """
        handles = list(ensure_tuple(img))
        first = handles[0]
        for handle in handles[1:]:
            if (handle.spatial_shape, handle.channel_dim) != (first.spatial_shape, first.channel_dim):
                raise ValueError(
                    f"files stacked as channels must have equal shapes: {first.filename} has {first.shape}, "
                    f"{handle.filename} has {handle.shape}"
                )
        arrays = [self.load(handle) for handle in handles]
        channel_dim = first.channel_dim
        if len(arrays) == 1:
            array = arrays[0]
        elif channel_dim is None:
            array, channel_dim = np.stack(arrays, axis=0), 0
        else:
            array = np.concatenate(arrays, axis=channel_dim)
        affine = np.eye(len(first.spatial_shape) + 1)
        meta = {
            MetaKeys.AFFINE: affine,
            MetaKeys.ORIGINAL_AFFINE: affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray(first.spatial_shape),
            MetaKeys.ORIGINAL_CHANNEL_DIM: math.nan if channel_dim is None else channel_dim,
            MetaKeys.SPACE: SpaceKeys.RAS,
            "filename_or_obj": first.filename,
        }
        return array, meta

    def _resolve_channel_dim(self, ndim: int, file_channel_dim: int | None) -> int | None:
        if self.channel_dim == "no_channel":
            return None
        if self.channel_dim is None:
            return file_channel_dim
        if not -ndim <= self.channel_dim < ndim:
            raise ValueError(f"channel_dim {self.channel_dim} is out of range for a {ndim}-d array")
        return self.channel_dim % ndim

    def _volume_path(self, name: str) -> str:
        """The path to open, with the dataset this reader chooses when ``name`` names none."""
        return name


class _ContainerReader(ArrayFileReader):
    """A reader of files holding named datasets (HDF5 files, zarr groups).

    The dataset is chosen by, in order: the path's ``:dataset`` suffix, the ``dataset`` argument, or the
    container's only dataset.
    """

    def __init__(self, dataset: str | None = None, channel_dim: str | int | None = None) -> None:
        super().__init__(channel_dim)
        self.dataset = dataset

    def _volume_path(self, name: str) -> str:
        location = parse_volume_path(name)
        return f"{location.file}:{self.dataset}" if location.key is None and self.dataset is not None else name


class HDF5Reader(_ContainerReader):
    """Read one dataset of an HDF5 file (``.h5``, ``.hdf5``, ``.hdf``).

    The dataset is chosen by, in order: the path's ``:dataset`` suffix (``"a.h5:label"``), the
    ``dataset`` argument, or the file's only dataset.

    Args:
        dataset: default dataset name (e.g. ``"raw"``), may contain groups (``"volumes/raw"``).
        channel_dim: see :class:`ArrayFileReader`; HDF5 datasets have no channel axis by default.
    """

    file_format = "hdf5"


class ZarrReader(_ContainerReader):
    """Read a zarr array (a ``.zarr`` folder).

    The path may be an array itself (``"a.zarr"``) or a group; the array in a group is chosen by, in
    order: the path's ``:dataset`` suffix (``"a.zarr:raw"``), the ``dataset`` argument, or the group's only
    array.

    Args:
        dataset: default array path inside a group (e.g. ``"raw"``).
        channel_dim: see :class:`ArrayFileReader`; zarr arrays have no channel axis by default.
    """

    file_format = "zarr"


class TiffReader(ArrayFileReader):
    """Read a TIFF file (``.tif``, ``.tiff``): 2D files give (Y, X), stacks (Z, Y, X).

    With ``channel_dim=None`` a channel axis that tifffile reports (``C``), or colour samples stored last
    (``S``, as in RGB images), becomes the channel axis (see :class:`~spoco_monai.data.volume_io.LazyVolume`).

    Args:
        channel_dim: see :class:`ArrayFileReader`.
    """

    file_format = "tiff"


class ImageFileReader(ArrayFileReader):
    """Read a 2D PNG or JPEG image (``.png``, ``.jpg``, ``.jpeg``): grey or label images give (Y, X), colour images
    (C, Y, X) with their samples as channels (see :class:`~spoco_monai.data.volume_io.LazyVolume`).

    Args:
        channel_dim: see :class:`ArrayFileReader`.
    """

    file_format = "image"


class ReaderBySuffix(ImageReader):
    """Read HDF5, zarr, TIFF, PNG/JPEG and NIfTI files, each with the one reader its suffix names.

    NIfTI goes to MONAI's ``NibabelReader`` rather than ITK, so its arrays are as stored, like every other format
    and like :func:`~spoco_monai.data.volume_io.open_volume`. The other formats go to the readers above.
    """

    def __init__(self) -> None:
        super().__init__()
        self.readers: tuple[ImageReader, ...] = (
            HDF5Reader(), ZarrReader(), TiffReader(), ImageFileReader(), NibabelReader()
        )

    def reader_for(self, filename: Sequence[PathLike] | PathLike) -> ImageReader | None:
        """The reader of ``filename``'s format; None for a format none of them reads."""
        return next((reader for reader in self.readers if reader.verify_suffix(filename)), None)

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """Whether one of the readers reads ``filename``'s format."""
        return self.reader_for(filename) is not None

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> tuple[ImageReader, Any]:
        """The chosen reader and what its ``read`` returns, for :meth:`get_data`.

        Raises:
            ValueError: for a format none of the readers reads (``LoadImage`` then tries MONAI's readers).
        """
        reader = self.reader_for(data)
        if reader is None:
            raise ValueError(f"{type(self).__name__} reads HDF5, zarr, TIFF, PNG/JPEG and NIfTI files, got {data}")
        return reader, reader.read(data, **kwargs)

    def get_data(self, img: tuple[ImageReader, Any]) -> tuple[np.ndarray, dict]:
        """The array and metadata, from the reader that read ``img`` (see :meth:`read`)."""
        reader, handle = img
        return reader.get_data(handle)
