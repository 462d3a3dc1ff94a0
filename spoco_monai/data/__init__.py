"""Data: readers and a writer (HDF5, zarr, TIFF), lazy volume I/O, datalists, start-up dataset checks, one-line
messages for failed writes, point and box annotation files, and synthetic sample data."""

from __future__ import annotations

from spoco_monai.data.boxes_csv import read_boxes_csv, write_boxes_csv
from spoco_monai.data.checks import check_dataset, check_new_outputs
from spoco_monai.data.datalist import DATALIST_SPLITS, load_datalist, split_items
from spoco_monai.data.disk_errors import describe_os_error
from spoco_monai.data.points_csv import image_to_points, points_to_image, read_points_csv, write_points_csv
from spoco_monai.data.readers import (
    ArrayFileReader,
    HDF5Reader,
    ImageFileReader,
    ReaderBySuffix,
    TiffReader,
    VolumeHandle,
    ZarrReader,
    default_readers,
    volume_file,
)
from spoco_monai.data.synthetic import SYNTHETIC_FORMATS, make_synthetic_volume, write_synthetic_dataset
from spoco_monai.data.volume_io import (
    LazyVolume,
    UnreadableVolumeError,
    VolumePath,
    create_volume,
    open_volume,
    parse_volume_path,
    volume_format,
    write_volume,
)
from spoco_monai.data.writer import ArrayFileWriter
