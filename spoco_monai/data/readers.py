"""MONAI image readers for HDF5, zarr and TIFF files, for ``LoadImaged(reader=...)``.

MONAI reads NIfTI and ITK formats itself; these readers add the microscopy containers. Nothing is
registered globally: pass an instance (or the dotted class name) to ``LoadImage``/``LoadImaged``::

    LoadImaged(keys=["image", "label"], reader=HDF5Reader())   # items {"image": "a.h5:raw", "label": "a.h5:label"}
    LoadImaged(keys="image", reader=HDF5Reader(dataset="raw"))  # items {"image": "a.h5"}
    # in a bundle config: {"_target_": "LoadImaged", "keys": ["image", "label"],
    #                      "reader": "$spoco_monai.data.TiffReader()"}

Arrays come back in the order in which they are stored, (Z, Y, X) or (Y, X), with an identity affine
(unlike MONAI's PNG reader, no axes are swapped), so an image and its label read by the same reader
always align. A channel axis, when there is one, is reported as ``original_channel_dim`` so that
``EnsureChannelFirstd`` moves it first; otherwise ``original_channel_dim`` is NaN ("no channel") and
``EnsureChannelFirstd`` adds a channel axis of size 1.

``read`` opens the file only to read its header and returns :class:`VolumeHandle` objects; the voxels are
read by ``get_data``. This keeps shape checks cheap (:func:`spoco_monai.data.check_dataset`).
"""

from __future__ import annotations

import math
import os
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import tifffile
import zarr
from monai.config import PathLike
from monai.data import ImageReader
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

from spoco_monai.data.volume_io import open_volume, parse_volume_path

__all__ = [
    "volume_file",
    "VolumeHandle",
    "ArrayFileReader",
    "HDF5Reader",
    "ZarrReader",
    "TiffReader",
]

_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def volume_format(name: str) -> str | None:
    """The format of the volume at ``name`` (see :data:`~spoco_monai.data.volume_io.VOLUME_FORMATS`), None if unknown."""
    try:
        return parse_volume_path(name).format
    except ValueError:
        # volume_io insists on a dataset in HDF5 paths; HDF5Reader supplies its configured or sole one.
        return "hdf5" if name.lower().endswith(_HDF5_SUFFIXES) else None


def volume_file(name: PathLike) -> Path:
    """The file (or zarr folder) holding the volume at ``name``: a ``:dataset`` suffix is removed.

    Args:
        name: e.g. ``"a.h5:raw"``, ``"a.h5"``, ``"b.zarr:raw"``, ``"c.nii.gz"``, ``"d.mha"``.

    Returns:
        The path on disk (``name`` itself for formats without datasets).
    """
    text = os.fspath(name)
    try:
        return parse_volume_path(text).file
    except ValueError:
        # HDF5 without a dataset, or a format only MONAI's readers know (e.g. ".mha"): a plain file.
        return Path(text)


@dataclass(frozen=True)
class VolumeHandle:
    """A volume whose header has been read, its voxels not yet.

    Attributes:
        filename: the path as given (e.g. ``"a.h5"``).
        path: the volume path as :func:`spoco_monai.data.volume_io.open_volume` reads it, with the dataset
            chosen by the reader (e.g. ``"a.h5:raw"``).
        shape: the stored array shape, channel axis included.
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
        channel_dim: None lets the file decide (no channel for HDF5/zarr; for TIFF, a ``C`` axis or
            trailing colour samples); ``"no_channel"`` forces no channel; an int names the channel axis of
            the stored array.
    """

    volume_format: str = ""

    def __init__(self, channel_dim: str | int | None = None) -> None:
        super().__init__()
        if not (channel_dim is None or channel_dim == "no_channel" or isinstance(channel_dim, int)):
            raise ValueError(f"channel_dim must be None, 'no_channel' or an int, got {channel_dim!r}")
        self.channel_dim = channel_dim

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """Whether every path is in this reader's format (judged from its suffix)."""
        return all(volume_format(os.fspath(name)) == self.volume_format for name in ensure_tuple(filename))

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
            if volume_format(name) != self.volume_format:
                raise ValueError(f"{type(self).__name__} reads {self.volume_format} files, got {name}")
            path = self._volume_path(name)
            with open_volume(path) as volume:
                shape, dtype = tuple(volume.shape), volume.dtype
            channel_dim = self._resolve_channel_dim(len(shape), self._file_channel_dim(path))
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

    def _file_channel_dim(self, path: str) -> int | None:
        """The channel axis the file itself declares."""
        return None


class _ContainerReader(ArrayFileReader):
    """A reader of files holding named datasets (HDF5 files, zarr groups).

    The dataset is chosen by, in order: the path's ``:dataset`` suffix, the ``dataset`` argument, or the
    container's only dataset.
    """

    def __init__(self, dataset: str | None = None, channel_dim: str | int | None = None) -> None:
        super().__init__(channel_dim)
        self.dataset = dataset

    def _volume_path(self, name: str) -> str:
        if not name.lower().endswith(_HDF5_SUFFIXES) and parse_volume_path(name).key is not None:
            return name
        file = volume_file(name)
        if not file.exists():
            raise FileNotFoundError(f"{type(self).__name__}: file {file} does not exist")
        if self.dataset is not None:
            return f"{file}:{self.dataset}"
        datasets = self._datasets(file)
        if datasets is None:
            return name
        if len(datasets) != 1:
            raise ValueError(
                f"{type(self).__name__}: {file} holds {len(datasets)} datasets {datasets}; name one with a "
                f"path such as '{file}:{datasets[0] if datasets else 'raw'}' or the reader's dataset argument"
            )
        return f"{file}:{datasets[0]}"

    @abstractmethod
    def _datasets(self, file: Path) -> list[str] | None:
        """The sorted dataset names in ``file``; None when the file is a single array."""


class HDF5Reader(_ContainerReader):
    """Read one dataset of an HDF5 file (``.h5``, ``.hdf5``, ``.hdf``).

    The dataset is chosen by, in order: the path's ``:dataset`` suffix (``"a.h5:label"``), the
    ``dataset`` argument, or the file's only dataset.

    Args:
        dataset: default dataset name (e.g. ``"raw"``), may contain groups (``"volumes/raw"``).
        channel_dim: see :class:`ArrayFileReader`; HDF5 datasets have no channel axis by default.
    """

    volume_format = "hdf5"

    def _datasets(self, file: Path) -> list[str] | None:
        names: list[str] = []
        with h5py.File(file, "r") as container:
            container.visititems(lambda name, node: names.append(name) if isinstance(node, h5py.Dataset) else None)
        return sorted(names)


class ZarrReader(_ContainerReader):
    """Read a zarr array (a ``.zarr`` folder).

    The path may be an array itself (``"a.zarr"``) or a group; the array in a group is chosen by, in
    order: the path's ``:dataset`` suffix (``"a.zarr:raw"``), the ``dataset`` argument, or the group's only
    array.

    Args:
        dataset: default array path inside a group (e.g. ``"raw"``).
        channel_dim: see :class:`ArrayFileReader`; zarr arrays have no channel axis by default.
    """

    volume_format = "zarr"

    def _datasets(self, file: Path) -> list[str] | None:
        node = zarr.open(str(file), mode="r")
        return sorted(name for name, _ in node.arrays()) if isinstance(node, zarr.Group) else None


class TiffReader(ArrayFileReader):
    """Read a TIFF file (``.tif``, ``.tiff``): 2D files give (Y, X), stacks (Z, Y, X).

    With ``channel_dim=None`` a channel axis that tifffile reports (``C``), or colour samples stored last
    (``S``, as in RGB images), becomes the channel axis. Leading samples are not taken as channels because
    tifffile writes 3- and 4-slice stacks that way unless told otherwise.

    Args:
        channel_dim: see :class:`ArrayFileReader`.
    """

    volume_format = "tiff"

    def _file_channel_dim(self, path: str) -> int | None:
        with tifffile.TiffFile(path) as tiff:
            axes = tiff.series[0].axes
        if "C" in axes:
            return axes.index("C")
        return len(axes) - 1 if axes.endswith("S") else None
