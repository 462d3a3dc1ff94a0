from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage, SaveImaged

from spoco_monai.data import ArrayFileWriter, HDF5Reader, TiffReader, ZarrReader, open_volume


def _labels(shape: tuple[int, ...]) -> MetaTensor:
    values = torch.arange(int(np.prod(shape)), dtype=torch.int64).reshape(1, *shape) % 7
    return MetaTensor(values, meta={"filename_or_obj": "/data/cells.tif"})


def _save(tmp_path, labels: MetaTensor, output_ext: str, **writer_options) -> None:
    save = SaveImaged(
        keys="pred", output_dir=str(tmp_path), output_postfix="instances", output_ext=output_ext,
        output_dtype=np.int32, resample=False, separate_folder=False, writer=ArrayFileWriter, print_log=False,
        **writer_options,
    )
    save({"pred": labels})


def test_tiff_round_trip_keeps_the_axis_order(tmp_path):
    # a non-square image: a transposed file would not even have the same shape
    labels = _labels((5, 8))
    _save(tmp_path, labels, ".tif")
    written = LoadImage(reader=TiffReader(), image_only=True, dtype=None)(str(tmp_path / "cells_instances.tif"))
    assert written.dtype == torch.int32
    np.testing.assert_array_equal(np.asarray(written), labels[0].numpy())


@pytest.mark.parametrize("output_ext, reader", [(".h5", HDF5Reader), (".zarr", ZarrReader)])
def test_container_round_trip_in_the_named_dataset(tmp_path, output_ext, reader):
    labels = _labels((3, 4, 6))
    _save(tmp_path, labels, output_ext)
    path = tmp_path / f"cells_instances{output_ext}"
    with open_volume(f"{path}:segmentation") as volume:
        np.testing.assert_array_equal(volume[...], labels[0].numpy())
    written = LoadImage(reader=reader(dataset="segmentation"), image_only=True)(str(path))
    np.testing.assert_array_equal(np.asarray(written), labels[0].numpy())


def test_multichannel_array_stays_channel_first(tmp_path):
    writer = ArrayFileWriter(output_dtype=np.float32, dataset="embeddings")
    writer.set_data_array(torch.ones(3, 4, 5), channel_dim=0)
    writer.set_metadata({"affine": np.eye(3)})
    writer.write(tmp_path / "embeddings.h5")
    with open_volume(f"{tmp_path / 'embeddings.h5'}:embeddings") as volume:
        assert volume.shape == (3, 4, 5) and volume.dtype == np.float32


def test_replaces_an_existing_file_and_leaves_no_partial_file(tmp_path):
    writer = ArrayFileWriter(output_dtype=np.uint16)
    for value in (1, 2):
        writer.set_data_array(np.full((1, 4, 4), value))
        writer.write(tmp_path / "labels.tif")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["labels.tif"]
    with open_volume(tmp_path / "labels.tif") as volume:
        assert int(volume[...].max()) == 2 and volume.dtype == np.uint16
