"""Lazy reading and safe writing of image and label volumes in NIfTI, TIFF, HDF5 and zarr.

Paths name the format by their suffix: ``.nii`` / ``.nii.gz`` (NIfTI), ``.tif`` / ``.tiff`` (TIFF),
``file.h5:dataset`` (HDF5, also ``.hdf5`` / ``.hdf``; the dataset may be a path inside groups) and
``volume.zarr`` or ``volume.zarr:path/in/group`` (zarr). Reading never loads more than the slices asked
for (NIfTI via nibabel's array proxy, TIFF via a memory map or tifffile's zarr store, HDF5 and zarr by
their chunks). Writing goes to a temporary sibling and is renamed into place only once complete, so a
volume is never left half-written under its final name.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np
import tifffile
import zarr
from PIL import Image

from .atomic import PARTIAL_PREFIX, remove_after_failure, remove_path, replace_path
from .disk_errors import naming_path
from .hdf5_writing import open_hdf5_for_writing

VOLUME_FORMATS = ("nifti", "tiff", "hdf5", "zarr", "image")
_SUFFIXES = {
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".zarr": "zarr",
    # 2D images as PIL reads them (a label image painted in any editor, a microscope's PNG export)
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
}
# the voxel size attribute of HDF5 datasets and zarr arrays, in micrometres per axis (as PlantSeg writes it)
ELEMENT_SIZE_ATTRIBUTE = "element_size_um"
# a zarr path ending so is written as an OME-Zarr (NGFF 0.4) label image, which napari opens directly
OME_ZARR_SUFFIX = ".ome.zarr"
NGFF_VERSION = "0.4"


@dataclass(frozen=True)
class VolumePath:
    """A parsed volume path.

    Attributes:
        file: the file (NIfTI, TIFF, HDF5) or directory (zarr) on disk.
        key: the dataset inside an HDF5 file or the array path inside a zarr group (``None`` for the root).
        format: one of :data:`VOLUME_FORMATS`.
    """

    file: Path
    key: str | None
    format: str

    def __str__(self) -> str:
        return f"{self.file}:{self.key}" if self.key else str(self.file)


def volume_format(path: str | os.PathLike) -> str | None:
    """The format a volume path names by its suffix (one of :data:`VOLUME_FORMATS`), ``None`` for another suffix."""
    try:
        return parse_volume_path(path).format
    except ValueError:
        return None


def parse_volume_path(path: str | os.PathLike | VolumePath) -> VolumePath:
    """Split ``path`` into file, inner key and format.

    Args:
        path: e.g. ``"image.nii.gz"``, ``"stack.tif"``, ``"data.h5:raw"``, ``"data.h5"`` (its only dataset),
            ``"volume.zarr"``, ``"volume.zarr:labels/s0"``.

    Raises:
        ValueError: for an unknown suffix.
    """
    if isinstance(path, VolumePath):
        return path
    text = os.fspath(path)
    file_part, key = text, None
    # the key separator is the last colon after a known container suffix (Windows drive letters have none)
    for suffix in (".h5:", ".hdf5:", ".hdf:", ".zarr:"):
        position = text.lower().rfind(suffix)
        if position >= 0:
            split = position + len(suffix) - 1
            file_part, key = text[:split], text[split + 1 :].strip("/") or None
            break
    name = file_part.lower().rstrip("/")
    format_ = next((fmt for suffix, fmt in _SUFFIXES.items() if name.endswith(suffix)), None)
    if format_ is None:
        raise ValueError(
            f"cannot tell the volume format of {text!r}: expected a suffix among {sorted(_SUFFIXES)} "
            "(HDF5 as 'file.h5:dataset', zarr as 'volume.zarr' or 'volume.zarr:array')."
        )
    return VolumePath(Path(file_part.rstrip("/")), key, format_)


class UnreadableVolumeError(ValueError):
    """A volume file that cannot be read: truncated, corrupt, or not in the format its suffix names."""


class LazyVolume:
    """Read-only, lazily loaded volume: slicing reads only the requested region.

    The channel axis, where the file declares one, is exposed first (channel-first, the MONAI convention): the
    4th/5th axis of a NIfTI volume, a TIFF ``C`` axis or trailing colour samples (RGB). Otherwise the array is
    exposed exactly as stored; an HDF5 or zarr array of one more axis than the spatial ones has its channels
    first by convention.

    Attributes:
        name: the volume path, as messages name it.
        shape: shape of the exposed array.
        dtype: numpy dtype of the stored values.
        channel_dim: 0 when the file declares a channel axis (exposed first), ``None`` when it declares none.
        affine: the NIfTI affine (4x4), ``None`` for other formats.
        element_size: the voxel size per spatial axis, in the order of the exposed axes, where the file carries
            one (NIfTI ``pixdim``, the HDF5 or zarr attribute ``element_size_um``, OME-TIFF ``PhysicalSize``,
            ImageJ TIFF spacing and resolution); ``None`` otherwise.
        chunks: the shape of the storage chunks, in the order of the exposed axes, for chunked storage (zarr,
            chunked HDF5, tiled TIFF; any part of a chunk is read by decoding all of it); ``None`` otherwise.

    Raises:
        UnreadableVolumeError: from slicing, when the file cannot be read there (e.g. corrupt compressed data);
            the message names the file.
    """

    def __init__(
        self,
        array: Any,
        name: str,
        closer: Any = None,
        affine: np.ndarray | None = None,
        channel_axis: int | None = None,
        element_size: Sequence[float] | None = None,
    ):
        self._array = array
        self._closer = closer
        stored = tuple(int(s) for s in array.shape)
        self._channel_axis = None if channel_axis is None else channel_axis % len(stored)
        self.name = name
        self.shape: tuple[int, ...] = self._exposed(stored)
        self.dtype = np.dtype(array.dtype)
        self.channel_dim = None if self._channel_axis is None else 0
        self.affine = affine
        self.element_size = None if element_size is None else tuple(float(v) for v in element_size)
        chunks = getattr(array, "chunks", None)
        self.chunks: tuple[int, ...] | None = None if chunks is None else self._exposed(tuple(int(c) for c in chunks))

    def _exposed(self, stored: tuple[int, ...]) -> tuple[int, ...]:
        """Per-axis values of the stored array in the order of the exposed axes (the channel axis first)."""
        if self._channel_axis is None:
            return stored
        return (stored[self._channel_axis], *(s for a, s in enumerate(stored) if a != self._channel_axis))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if self._channel_axis is None:
            return self._read(key)
        if Ellipsis in key or len(key) > self.ndim:
            raise IndexError(f"index the channel-first volume with at most {self.ndim} slices, got {key}.")
        key = key + (slice(None),) * (self.ndim - len(key))
        stored_key = list(key[1:])
        stored_key.insert(self._channel_axis, key[0])
        values = self._read(tuple(stored_key))
        if isinstance(key[0], (int, np.integer)):
            return values
        # the channel axis keeps its place among the axes that remain after integer indices
        position = sum(1 for k in stored_key[: self._channel_axis] if not isinstance(k, (int, np.integer)))
        return np.moveaxis(values, position, 0)

    def _read(self, key: tuple) -> np.ndarray:
        try:
            return np.asarray(self._array[key])
        except (IndexError, TypeError):
            raise
        except Exception as error:  # zlib, h5py, tifffile and nibabel raise their own types for a damaged file
            raise _unreadable(self.name, error) from error

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        values = self[(slice(None),) * self.ndim]
        return values if dtype is None else values.astype(dtype)

    def close(self) -> None:
        """Release the file handle, if any."""
        if self._closer is not None:
            self._closer.close()
            self._closer = None

    def __enter__(self) -> LazyVolume:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def open_volume(path: str | os.PathLike | VolumePath) -> LazyVolume:
    """Open a volume for lazy, sliced reading.

    Args:
        path: a volume path (see :func:`parse_volume_path`).

    Returns:
        a :class:`LazyVolume`; use it as a context manager (or call ``close``) to release the file.

    Raises:
        FileNotFoundError: if the file, dataset or array does not exist.
        UnreadableVolumeError: if the file cannot be opened (truncated, corrupt, another format); one line
            naming the file.
        ValueError: for an unknown format.
    """
    location = parse_volume_path(path)
    if not location.file.exists():
        raise FileNotFoundError(f"no volume at {location.file}.")
    try:
        return _open(location)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as error:  # the libraries raise their own types for a damaged file
        raise _unreadable(str(location), error) from error


def _open(location: VolumePath) -> LazyVolume:
    name = str(location)
    if location.format == "nifti":
        image = nib.load(location.file)
        # NIfTI stores vectors/channels after the three spatial axes (4th or 5th dimension)
        proxy = image.dataobj
        if len(proxy.shape) == 5 and proxy.shape[3] == 1:
            proxy = proxy.reshape((*proxy.shape[:3], proxy.shape[4]))
        spatial_dims = min(3, len(proxy.shape))
        return LazyVolume(
            proxy, name, affine=image.affine, channel_axis=3 if len(proxy.shape) == 4 else None,
            element_size=image.header.get_zooms()[:spatial_dims],
        )
    if location.format == "tiff":
        channel_axis, element_size = _tiff_layout(location.file)
        try:
            array = tifffile.memmap(location.file, mode="r")
            return LazyVolume(array, name, channel_axis=channel_axis, element_size=element_size)
        except ValueError:
            # compressed or tiled files cannot be memory-mapped; tifffile's zarr store still reads lazily
            store = tifffile.imread(location.file, aszarr=True)
            return LazyVolume(
                zarr.open(store, mode="r"), name, closer=store, channel_axis=channel_axis, element_size=element_size
            )
    if location.format == "image":
        with Image.open(location.file) as picture:
            array = np.asarray(picture)
        # colour samples are stored last; a label or grey image has none
        return LazyVolume(array, name, channel_axis=-1 if array.ndim == 3 else None)
    if location.format == "hdf5":
        handle = h5py.File(location.file, "r")
        try:
            key = location.key or _only_dataset(location, _hdf5_datasets(handle))
        except ValueError:
            handle.close()
            raise
        if key not in handle:
            handle.close()
            raise FileNotFoundError(f"no dataset {key!r} in {location.file}.")
        dataset = handle[key]
        return LazyVolume(dataset, name, closer=handle, element_size=dataset.attrs.get(ELEMENT_SIZE_ATTRIBUTE))
    node = zarr.open(store=location.file, mode="r")
    key = location.key
    if key is None and isinstance(node, zarr.Group):
        # an OME-Zarr image reads as its full resolution, the first level of its first multiscale
        multiscales = node.attrs.asdict().get("multiscales", [{}])
        levels = [dataset["path"] for dataset in multiscales[0].get("datasets", [])]
        key = levels[0] if levels else _only_dataset(location, sorted(path for path, _ in node.arrays()))
    try:
        array = zarr.open_array(store=location.file, path=key or "", mode="r")
    except (FileNotFoundError, KeyError) as error:
        raise FileNotFoundError(f"no zarr array {key or '(root)'!r} in {location.file}.") from error
    element_size = array.attrs.get(ELEMENT_SIZE_ATTRIBUTE) or (_ngff_scale(location.file, key) if key else None)
    return LazyVolume(array, name, element_size=element_size)


def _hdf5_datasets(handle: h5py.File) -> list[str]:
    names: list[str] = []
    handle.visititems(lambda name, node: names.append(name) if isinstance(node, h5py.Dataset) else None)
    return sorted(names)


def _only_dataset(location: VolumePath, datasets: list[str]) -> str:
    """The only dataset of a container whose path names none."""
    if len(datasets) != 1:
        raise ValueError(
            f"{location.file} holds {len(datasets)} datasets {datasets}; name one with a path such as "
            f"'{location.file}:{datasets[0] if datasets else 'raw'}'."
        )
    return datasets[0]


def _unreadable(name: str, error: Exception) -> UnreadableVolumeError:
    return UnreadableVolumeError(
        f"cannot read {name} ({type(error).__name__}: {error}); the file may be truncated or corrupt."
    )


def _tiff_layout(file: Path) -> tuple[int | None, tuple[float, ...] | None]:
    """The channel axis a TIFF declares and its voxel size, after checking that it holds what it declares.

    The channel axis is a ``C`` axis, or colour samples stored last (``S``, as in RGB images); leading samples are
    not taken as channels because tifffile writes 3- and 4-slice stacks that way unless told otherwise. The voxel
    size is read from OME-TIFF metadata (``PhysicalSizeZ/Y/X``) or from ImageJ metadata (``spacing`` for Z, the
    resolution tags for Y and X); plain TIFF resolution tags are not trusted (they often hold a printer's dpi).

    Raises:
        ValueError: the file is truncated: tifffile reads what it can of such a file, e.g. the first pages of a
            stack, and only logs the problem (muted here: the error says it in one line).
    """
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with tifffile.TiffFile(file) as tiff:
            declared = [tuple(meta["shape"]) for meta in tiff.shaped_metadata or () if "shape" in meta]
            found = tuple(tiff.series[0].shape) if tiff.series else ()
            axes = tiff.series[0].axes if tiff.series else ""
            element_size = _tiff_element_size(tiff, axes)
    finally:
        logger.setLevel(level)
    if declared and int(np.prod(declared[0])) != int(np.prod(found)):
        raise ValueError(
            f"{file} is truncated or corrupt: its metadata declares shape {declared[0]} but only {found} can be read."
        )
    if "C" in axes:
        return axes.index("C"), element_size
    return (len(axes) - 1 if axes.endswith("S") else None), element_size


def _tiff_element_size(tiff: tifffile.TiffFile, axes: str) -> tuple[float, ...] | None:
    """Voxel size of the spatial axes (``Z``, ``Y``, ``X`` as present in ``axes``) from OME or ImageJ metadata."""
    spatial = [axis for axis in axes if axis in "ZYX"]
    if tiff.is_ome:
        image = tifffile.xml2dict(tiff.ome_metadata)["OME"]["Image"]
        pixels = (image[0] if isinstance(image, list) else image)["Pixels"]
        sizes = [pixels.get(f"PhysicalSize{axis}") for axis in spatial]
    elif tiff.is_imagej:
        page = tiff.pages.first
        sizes = [
            (tiff.imagej_metadata or {}).get("spacing") if axis == "Z"
            else _inverse_resolution(page.tags.get(f"{axis}Resolution"))
            for axis in spatial
        ]
    else:
        return None
    if not spatial or any(size is None or float(size) <= 0 for size in sizes):
        return None
    return tuple(float(size) for size in sizes)


def _inverse_resolution(tag: tifffile.TiffTag | None) -> float | None:
    """The pixel size a TIFF resolution tag (pixels per unit, a rational) stands for."""
    if tag is None:
        return None
    numerator, denominator = tag.value
    return denominator / numerator if numerator else None


def volume_mean_std(volume: Any, max_elements: int = 2**22) -> tuple[float, float]:
    """Mean and standard deviation of all values of a (lazy) volume, read slab by slab.

    These are the statistics MONAI's ``NormalizeIntensity`` uses by default (whole image, all channels),
    computed without loading more than ``max_elements`` values at once (a single channel of a large volume is
    read in slabs along its first spatial axis, and so on), so the peak memory does not grow with the volume.

    Args:
        volume: a :class:`LazyVolume`, numpy array, or any sliceable array with ``shape``.
        max_elements: upper bound on the values read per slab (unless one row along the last axis is longer).

    Returns:
        ``(mean, std)`` as floats (population standard deviation).
    """
    shape = tuple(int(s) for s in volume.shape)
    total = total_squares = 0.0
    for slab in _slabs(shape, max_elements):
        values = np.asarray(volume[slab], dtype=np.float64).ravel()
        total += float(values.sum())
        total_squares += float(values @ values)
    count = float(np.prod(shape))
    mean = total / count
    return mean, float(np.sqrt(max(0.0, total_squares / count - mean**2)))


def _slabs(shape: tuple[int, ...], max_elements: int) -> Iterator[tuple[slice, ...]]:
    """Index tuples that cover an array of ``shape`` in C order, each at most ``max_elements`` values (or one row)."""
    # the first axis whose trailing sub-array (one index along it) fits; earlier axes are stepped one by one
    axis = next((a for a in range(len(shape)) if int(np.prod(shape[a + 1 :])) <= max_elements), len(shape) - 1)
    step = max(1, max_elements // max(1, int(np.prod(shape[axis + 1 :]))))
    for outer in itertools.product(*(range(size) for size in shape[:axis])):
        for start in range(0, shape[axis], step):
            yield (*(slice(i, i + 1) for i in outer), slice(start, start + step))


def check_can_create(
    path: str | os.PathLike | VolumePath, overwrite: bool = False, overwrite_option: str = "overwrite=True"
) -> VolumePath:
    """Check that a volume may be written at ``path`` before any work is done.

    For ``file.h5:dataset`` and ``volume.zarr:array`` the volume is the dataset (array) alone: writing one into
    an existing file or group is allowed, and only that dataset needs ``overwrite`` to be replaced.

    Args:
        path: the volume to write (see :func:`parse_volume_path`).
        overwrite: whether an existing volume may be replaced.
        overwrite_option: how the caller's user asks for ``overwrite``, as the message names it (``"--overwrite"``
            on the command line, ``"--overwrite True"`` for a bundle run).

    Raises:
        FileExistsError: if the volume exists and ``overwrite`` is False.
        FileNotFoundError: if the parent directory does not exist.
        NotADirectoryError: if a part of the parent directory's path is a file.
        PermissionError: if the parent directory (the file, for a dataset added to an existing HDF5 file) cannot be
            written: a read-only file system or missing permissions, as the message says.
        ValueError: for an HDF5 path without a dataset, if the existing file is not an HDF5 file / zarr group, or
            if a whole zarr group would be replaced.
    """
    location = parse_volume_path(path)
    if location.format == "image":
        raise ValueError(
            f"cannot write labels to {location.file}: PNG and JPEG are read, not written (8 bits cannot hold every "
            "object id); write a TIFF (.tif, which napari and Fiji open), zarr, HDF5 or NIfTI instead."
        )
    if location.format == "hdf5" and not location.key:
        raise ValueError(f"an HDF5 volume to write needs a dataset name, as 'file.h5:dataset', got {str(path)!r}.")
    folder = location.file.parent
    if not folder.is_dir():
        # a file among the folders hides those below it: name it, it is what to fix
        existing = next(path for path in (folder, *folder.parents) if path.exists())
        if not existing.is_dir():
            raise NotADirectoryError(f"cannot write {location.file}: {existing} is a file, not a folder.")
        raise FileNotFoundError(f"the directory {folder} for {location.file} does not exist.")
    _check_writable(location.file if _is_inner(location) and location.format == "hdf5" else folder, location)
    if not location.file.exists():
        return location
    if _is_inner(location):
        if _inner_exists(location) and not overwrite:
            raise FileExistsError(
                f"{location} already exists; choose another output path or pass {overwrite_option} to replace it "
                f"(only {location.key!r} is replaced, the other contents of {location.file} are kept)."
            )
        return location
    if not overwrite:
        raise FileExistsError(
            f"{location.file} already exists; choose another output path or pass {overwrite_option} to replace it."
        )
    if location.format == "zarr" and not _is_ome_zarr(location) and not _is_zarr_array(location.file):
        raise ValueError(
            f"{location.file} is a zarr group, which overwrite would delete with all its arrays; name the array "
            f"to replace, as '{location.file}:name'."
        )
    return location


def _check_writable(path: Path, location: VolumePath) -> None:
    """Raise ``PermissionError`` naming the cause when ``path``, which writing ``location`` changes, is read-only."""
    if os.access(path, os.W_OK):
        return
    read_only = os.statvfs(path).f_flag & os.ST_RDONLY
    cause = "is on a read-only file system" if read_only else "is not writable for this user"
    raise PermissionError(f"cannot write {location.file}: {path} {cause}.")


def _is_inner(location: VolumePath) -> bool:
    """Whether the volume is one dataset/array inside an existing HDF5 file or zarr group."""
    return location.key is not None and location.format in ("hdf5", "zarr") and location.file.exists()


def _inner_exists(location: VolumePath) -> bool:
    if location.format == "hdf5":
        try:
            with h5py.File(location.file, "r") as handle:
                return location.key in handle
        except OSError as error:
            raise ValueError(f"{location.file} exists but is not a readable HDF5 file: {error}") from error
    return (location.file / location.key).exists()


def _is_ome_zarr(location: VolumePath) -> bool:
    """Whether the path names a whole OME-Zarr image (``labels.ome.zarr``), which is written as one."""
    return location.format == "zarr" and location.key is None and location.file.name.lower().endswith(OME_ZARR_SUFFIX)


def ome_zarr_level_shapes(shape: Sequence[int], chunks: Sequence[int]) -> list[tuple[int, ...]]:
    """Shapes of the resolution levels of an OME-Zarr image: level 0 is ``shape``, each next one halves the spatial
    (last three at most) axes of the one before, rounding up, until a level fits in one chunk."""
    spatial = min(len(shape), 3)
    levels = [tuple(int(s) for s in shape)]
    while any(s > c for s, c in zip(levels[-1][-spatial:], chunks[-spatial:])):
        levels.append(levels[-1][:-spatial] + tuple(-(-s // 2) for s in levels[-1][-spatial:]))
    return levels


def ome_zarr_lower_levels(level0: Any) -> list[Any]:
    """The arrays of the resolution levels 1, 2, ... of the OME-Zarr image whose level 0 is ``level0``, as
    :func:`create_volume` makes them; empty for any other array (one without a pyramid)."""
    if not isinstance(level0, zarr.Array) or level0.path != "0":
        return []
    group = zarr.open_group(store=level0.store, mode="r+")
    multiscales = group.attrs.asdict().get("multiscales", [{}])
    return [group[dataset["path"]] for dataset in multiscales[0].get("datasets", [])[1:]]


def _ngff_label_attributes(
    name: str, dims: int, element_size: Sequence[float] | None, num_levels: int = 1
) -> dict[str, Any]:
    """The NGFF 0.4 attributes of a label image with resolution levels ``0 .. num_levels - 1``, each at half the
    resolution of the one before along the spatial axes."""
    if dims not in (2, 3, 4):
        raise ValueError(f"an OME-Zarr image holds (C,) Z, Y, X or Y, X axes, got {dims} axes.")
    spatial = min(dims, 3)
    axes = [{"name": "c", "type": "channel"}] * (dims - spatial) + [
        {"name": axis, "type": "space"} for axis in "zyx"[-spatial:]
    ]
    voxel = [1.0] * spatial if element_size is None else [float(v) for v in element_size]
    return {
        "multiscales": [
            {
                "version": NGFF_VERSION,
                "name": name,
                "axes": axes,
                "datasets": [
                    {
                        "path": str(level),
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [1.0] * (dims - spatial) + [v * 2**level for v in voxel]}
                        ],
                    }
                    for level in range(num_levels)
                ],
            }
        ],
        "image-label": {"version": NGFF_VERSION},
    }


def _ngff_scale(file: Path, key: str) -> list[float] | None:
    """The scale an OME-Zarr group's ``multiscales`` metadata gives the array ``key``, if any."""
    parent, _, name = key.rpartition("/")
    try:
        attributes = zarr.open_group(store=file, path=parent, mode="r").attrs.asdict()
    except Exception:  # not inside a group: no NGFF metadata
        return None
    for multiscale in attributes.get("multiscales", attributes.get("ome", {}).get("multiscales", [])):
        spatial = [axis.get("type") in ("space", None) for axis in multiscale.get("axes", [])]
        for dataset in multiscale.get("datasets", []):
            if dataset.get("path") == name:
                scales = [t["scale"] for t in dataset.get("coordinateTransformations", []) if t.get("type") == "scale"]
                if not scales:
                    return None
                # the channel (and time) axes have no voxel size
                return [v for v, keep in zip(scales[0], spatial or [True] * len(scales[0])) if keep]
    return None


def _is_zarr_array(file: Path) -> bool:
    try:
        zarr.open_array(store=file, mode="r")
    except Exception:  # zarr raises several types for "not an array"; only the answer matters here
        return False
    return True


@contextmanager
def create_volume(
    path: str | os.PathLike | VolumePath,
    shape: Sequence[int],
    dtype: Any,
    chunks: Sequence[int] | None = None,
    affine: np.ndarray | None = None,
    overwrite: bool = False,
    element_size: Sequence[float] | None = None,
) -> Iterator[Any]:
    """Create a volume and yield a writable array; it appears under ``path`` only after a clean exit.

    zarr and HDF5 volumes are written chunk by chunk (compressed), so they may exceed memory. NIfTI and
    TIFF are written at once from an in-memory buffer and must fit in memory. The data go to a
    temporary sibling (``.partial-<name>``) that is renamed into place on success and removed on error.
    A path ending in ``.ome.zarr`` becomes an OME-Zarr (NGFF 0.4) label image: a zarr group whose resolution
    level ``0`` holds the labels, with the voxel size as its scale, and levels ``1, 2, ...`` each half the
    resolution of the one before (:func:`ome_zarr_level_shapes`) until one fits in a chunk; napari opens it as a
    labels layer with its pyramid (``napari labels.ome.zarr`` with the ``napari-ome-zarr`` plugin). The yielded
    array is level 0; whoever writes it fills the others (:func:`ome_zarr_lower_levels`), as
    :func:`write_volume` does.

    Args:
        path: a volume path (see :func:`parse_volume_path`); ``file.h5:dataset`` and ``volume.zarr:array`` in an
            existing file (group) add or replace that dataset only.
        shape: array shape (for NIfTI: x, y, z as stored).
        dtype: numpy dtype.
        chunks: chunk shape for zarr/HDF5 (default: 64 per axis, clipped to the shape).
        affine: 4x4 NIfTI affine (identity when omitted); ignored by other formats.
        overwrite: replace an existing volume (only once the new one is complete).
        element_size: voxel size per axis, stored as the OME-Zarr scale, as the ``element_size_um``
            attribute of HDF5 datasets and zarr arrays and as OME metadata of a 2D/3D TIFF; ``None`` for none
            (OME-Zarr: 1 per axis).

    Yields:
        an array supporting slice assignment (zarr array, h5py dataset or numpy array).

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is False.
        OSError: a failed write (e.g. a full disk), naming ``path``; nothing is left under its name.
    """
    location = check_can_create(path, overwrite)
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    chunks = tuple(min(int(c), s) for c, s in zip(chunks or (64,) * len(shape), shape))
    attributes = {} if element_size is None else {ELEMENT_SIZE_ATTRIBUTE: [float(v) for v in element_size]}
    # a failed write names no path: name the volume
    with naming_path(location.file):
        if _is_inner(location):
            with _create_inner(location, shape, dtype, chunks) as target:
                target.attrs.update(attributes)
                yield target
            return
        temporary = location.file.with_name(PARTIAL_PREFIX + location.file.name)
        remove_path(temporary)
        try:
            if _is_ome_zarr(location):
                root = zarr.open_group(store=temporary, mode="w", zarr_format=2)
                levels = ome_zarr_level_shapes(shape, chunks)
                root.attrs.update(_ngff_label_attributes(location.file.name, len(shape), element_size, len(levels)))
                arrays = [
                    root.create_array(
                        name=str(level), shape=level_shape, dtype=dtype,
                        chunks=tuple(min(c, s) for c, s in zip(chunks, level_shape)), fill_value=0,
                        chunk_key_encoding={"name": "v2", "separator": "/"},
                    )
                    for level, level_shape in enumerate(levels)
                ]
                yield arrays[0]
            elif location.format == "zarr":
                if location.key:
                    root = zarr.open_group(store=temporary, mode="w")
                    target = root.create_array(
                        name=location.key, shape=shape, dtype=dtype, chunks=chunks, fill_value=0
                    )
                else:
                    target = zarr.create_array(store=temporary, shape=shape, dtype=dtype, chunks=chunks, fill_value=0)
                target.attrs.update(attributes)
                yield target
            elif location.format == "hdf5":
                with open_hdf5_for_writing(temporary, "w") as handle:
                    target = handle.create_dataset(
                        location.key, shape=shape, dtype=dtype, chunks=chunks, compression="gzip", fillvalue=0
                    )
                    target.attrs.update(attributes)
                    yield target
            else:
                buffer = np.zeros(shape, dtype=dtype)
                yield buffer
                _write_whole(temporary, location.format, buffer, affine, element_size)
        except BaseException:
            remove_after_failure(temporary)
            raise
        replace_path(temporary, location.file)


@contextmanager
def _create_inner(location: VolumePath, shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...]) -> Iterator:
    """A dataset (array) written beside its target inside an existing HDF5 file (zarr group), then swapped in.

    The other datasets of the file are never touched: the new one is written under ``.partial-<name>`` in the
    same group and renamed over the old one only once complete. HDF5 does not reclaim the old dataset's space
    (``h5repack`` does).
    """
    parent, _, name = location.key.rpartition("/")
    temporary = f"{parent}/{PARTIAL_PREFIX}{name}" if parent else PARTIAL_PREFIX + name
    if location.format == "hdf5":
        with open_hdf5_for_writing(location.file, "r+") as handle:
            if temporary in handle:
                del handle[temporary]
            try:
                yield handle.create_dataset(
                    temporary, shape=shape, dtype=dtype, chunks=chunks, compression="gzip", fillvalue=0
                )
            except BaseException:
                del handle[temporary]
                raise
            if location.key in handle:
                del handle[location.key]
            handle.move(temporary, location.key)
        return
    remove_path(location.file / temporary)
    group = zarr.open_group(store=location.file, mode="a")
    try:
        yield group.create_array(name=temporary, shape=shape, dtype=dtype, chunks=chunks, fill_value=0)
    except BaseException:
        remove_after_failure(location.file / temporary)
        raise
    # a zarr array on a local store is a folder: swapping folders leaves the rest of the group as it was
    replace_path(location.file / temporary, location.file / location.key)


def write_volume(
    path: str | os.PathLike | VolumePath,
    array: np.ndarray,
    chunks: Sequence[int] | None = None,
    affine: np.ndarray | None = None,
    overwrite: bool = False,
) -> None:
    """Write an in-memory array as a volume (see :func:`create_volume` for formats and safety).

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is False.
    """
    array = np.asarray(array)
    with create_volume(path, array.shape, array.dtype, chunks=chunks, affine=affine, overwrite=overwrite) as target:
        target[...] = array
        spatial = min(array.ndim, 3)
        for level, lower in enumerate(ome_zarr_lower_levels(target), start=1):
            # every 2^level-th voxel along the spatial axes: labels keep their ids, which averaging would mix
            lower[...] = array[(Ellipsis, *(slice(None, None, 2**level),) * spatial)]


def _write_whole(
    file: Path, volume_format: str, array: np.ndarray, affine: np.ndarray | None, element_size: Sequence[float] | None
) -> None:
    if volume_format == "tiff":
        metadata = None
        if element_size is not None and 2 <= array.ndim <= 3 and len(element_size) == array.ndim:
            # OME-TIFF metadata: Fiji (Bio-Formats), napari and tifffile read the voxel size back
            axes = "ZYX"[3 - array.ndim :]
            metadata = {"axes": axes, **{f"PhysicalSize{a}": float(v) for a, v in zip(axes, element_size)}}
        tifffile.imwrite(
            file, array, compression="zlib", photometric="minisblack", ome=metadata is not None, metadata=metadata
        )
        return
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else np.asarray(affine)), file)
