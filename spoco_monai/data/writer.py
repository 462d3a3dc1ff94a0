"""A MONAI image writer for TIFF, HDF5 and zarr that stores the array in the order the package's readers return."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from monai.data import ImageWriter
from monai.utils import convert_to_numpy

from spoco_monai.data.volume_io import volume_format, write_volume

class ArrayFileWriter(ImageWriter):
    """Write a ``SaveImage``/``SaveImaged`` output as TIFF, HDF5 or zarr, axes in array order, atomically.

    MONAI's default TIFF writer (ITK) treats the first array axis as x, so a 2D label image read with
    :class:`~spoco_monai.data.TiffReader` would come back transposed. This writer stores the array as it is
    (a channel of size 1 is dropped), so :class:`~spoco_monai.data.TiffReader`, :class:`~spoco_monai.data.HDF5Reader`
    and :class:`~spoco_monai.data.ZarrReader` read the same array back. These formats carry no geometry: the
    metadata (affine, spacing) is not written. Pass it to ``SaveImaged(writer=ArrayFileWriter, ...)``.

    Args:
        output_dtype: dtype of the stored array.
        dataset: name of the dataset inside an HDF5 file or a zarr group; also used for zarr.
        **kwargs: further members, as for every MONAI ``ImageWriter``.
    """

    def __init__(self, output_dtype: Any = np.float32, dataset: str = "segmentation", **kwargs: Any) -> None:
        super().__init__(output_dtype=output_dtype, dataset=dataset, **kwargs)

    def set_data_array(self, data_array: Any, channel_dim: int | None = 0, **kwargs: Any) -> None:
        """Keep ``data_array`` channel first; a single channel is dropped. Other MONAI options are ignored."""
        array = convert_to_numpy(data_array)
        if channel_dim is not None:
            array = np.moveaxis(array, channel_dim, 0)
            if array.shape[0] == 1:
                array = array[0]
        self.data_obj = array

    def set_metadata(self, meta_dict: Mapping | None = None, **options: Any) -> None:
        """Accept and ignore the metadata: TIFF, HDF5 and zarr volumes are stored without geometry."""

    def write(self, filename: str | os.PathLike, verbose: bool = True, **kwargs: Any) -> None:
        """Write the array to ``filename`` (replacing it once the new file is complete)."""
        path = os.fspath(filename)
        if volume_format(path) in ("hdf5", "zarr"):
            path = f"{path}:{self.dataset}"
        write_volume(path, np.asarray(self.data_obj, dtype=self.output_dtype), overwrite=True)

