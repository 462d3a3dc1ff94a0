from __future__ import annotations

import logging
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr
from monai.bundle import ConfigParser
from monai.transforms import Compose, EnsureChannelFirstd, LoadImage, LoadImaged
from PIL import Image

from spoco_monai.data import (
    HDF5Reader,
    ImageFileReader,
    TiffReader,
    ZarrReader,
    check_dataset,
    default_readers,
    open_volume,
    volume_file,
    write_volume,
)

BUNDLE_CONFIGS = Path(__file__).parents[2] / "bundle" / "configs"


@pytest.mark.parametrize(
    "path, expected",
    [
        ("a/b.h5:raw", "a/b.h5"),
        ("b.hdf5:volumes/raw", "b.hdf5"),
        ("b.zarr:raw", "b.zarr"),
        ("b.h5", "b.h5"),
        ("C:/data/b.tif", "C:/data/b.tif"),
        ("c.nii.gz", "c.nii.gz"),
        ("d.mha", "d.mha"),
    ],
)
def test_volume_file_removes_the_dataset(path, expected):
    assert volume_file(path) == Path(expected)


def _volume(shape, dtype=np.uint16):
    return np.arange(np.prod(shape)).reshape(shape).astype(dtype)


def _write_h5(path, **datasets):
    with h5py.File(path, "w") as file:
        for name, array in datasets.items():
            file.create_dataset(name, data=array)
    return str(path)


def _load(reader, item, keys=("image", "label")):
    present = [key for key in keys if key in item]
    return Compose([LoadImaged(present, reader=reader, dtype=None), EnsureChannelFirstd(present)])(item)


@pytest.mark.parametrize("shape", [(6, 7), (3, 6, 7)])
def test_hdf5_round_trip_with_dataset_suffix(tmp_path, shape):
    raw, label = _volume(shape), _volume(shape, np.int32) % 3
    path = _write_h5(tmp_path / "v.h5", raw=raw, label=label)
    data = _load(HDF5Reader(), {"image": f"{path}:raw", "label": f"{path}:label"})
    np.testing.assert_array_equal(data["image"].numpy(), raw[None])
    np.testing.assert_array_equal(data["label"].numpy(), label[None])
    meta = data["image"].meta
    assert math.isnan(meta["original_channel_dim"])
    assert tuple(meta["spatial_shape"]) == shape
    assert meta["filename_or_obj"] == f"{path}:raw"
    np.testing.assert_array_equal(meta["original_affine"], np.eye(len(shape) + 1))


def test_hdf5_dataset_argument_nested_group_and_single_dataset(tmp_path):
    raw = _volume((4, 5))
    nested = _write_h5(tmp_path / "n.h5", **{"volumes/raw": raw, "volumes/label": raw})
    assert LoadImage(reader=HDF5Reader(dataset="volumes/raw"), dtype=None)(nested).shape == (4, 5)
    single = _write_h5(tmp_path / "s.h5", data=raw)
    np.testing.assert_array_equal(LoadImage(reader=HDF5Reader(), dtype=None)(single).numpy(), raw)


def test_hdf5_ambiguous_or_missing_dataset_names_the_file(tmp_path):
    path = _write_h5(tmp_path / "v.h5", raw=_volume((3, 3)), label=_volume((3, 3)))
    with pytest.raises(ValueError, match=r"v\.h5 holds 2 datasets \['label', 'raw'\]"):
        HDF5Reader().read(path)
    with pytest.raises(FileNotFoundError, match=r"no dataset 'mask'"):
        HDF5Reader().read(f"{path}:mask")
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        HDF5Reader(dataset="raw").read(str(tmp_path / "absent.h5"))
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        HDF5Reader().read(f"{tmp_path}/absent.h5:raw")
    with pytest.raises(ValueError, match="HDF5Reader reads hdf5 files"):
        HDF5Reader().read(str(tmp_path / "a.tif"))


def test_hdf5_channel_dim_and_multi_file_stacking(tmp_path):
    raw = _volume((4, 5, 2))
    path = _write_h5(tmp_path / "c.h5", raw=raw)
    loaded = LoadImage(reader=HDF5Reader(channel_dim=-1), dtype=None, ensure_channel_first=True)(path)
    np.testing.assert_array_equal(loaded.numpy(), np.moveaxis(raw, -1, 0))
    a = _write_h5(tmp_path / "a.h5", raw=_volume((4, 5)))
    b = _write_h5(tmp_path / "b.h5", raw=_volume((4, 5)) + 1)
    stacked = LoadImage(reader=HDF5Reader(), dtype=None, ensure_channel_first=True)([a, b])
    assert stacked.shape == (2, 4, 5)
    np.testing.assert_array_equal(stacked[1].numpy() - stacked[0].numpy(), np.ones((4, 5)))
    other = _write_h5(tmp_path / "o.h5", raw=_volume((4, 6)))
    with pytest.raises(ValueError, match="equal shapes"):
        LoadImage(reader=HDF5Reader(), dtype=None)([a, other])


def test_invalid_channel_dim_option():
    with pytest.raises(ValueError, match="channel_dim must be"):
        HDF5Reader(channel_dim="last")
    with pytest.raises(ValueError, match="channel_dim must be"):
        TiffReader(channel_dim=1.5)


@pytest.mark.parametrize("shape", [(6, 7), (3, 6, 7)])
def test_zarr_group_and_array_round_trip(tmp_path, shape):
    raw = _volume(shape)
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("raw", shape=shape, dtype=raw.dtype)[...] = raw
    group.create_array("label", shape=shape, dtype="int32")[...] = 1
    data = _load(ZarrReader(), {"image": f"{tmp_path}/g.zarr:raw", "label": f"{tmp_path}/g.zarr:label"})
    np.testing.assert_array_equal(data["image"].numpy(), raw[None])
    assert data["label"].shape == (1, *shape)
    array = zarr.open_array(str(tmp_path / "a.zarr"), mode="w", shape=shape, dtype=raw.dtype)
    array[...] = raw
    np.testing.assert_array_equal(LoadImage(reader=ZarrReader(), dtype=None)(str(tmp_path / "a.zarr")).numpy(), raw)
    with pytest.raises(ValueError, match="holds 2 datasets"):
        ZarrReader().read(str(tmp_path / "g.zarr"))
    with pytest.raises(FileNotFoundError, match="no zarr array 'raw'"):
        ZarrReader().read(f"{tmp_path}/a.zarr:raw")


@pytest.mark.parametrize("shape, axes", [((6, 7), "YX"), ((3, 6, 7), "ZYX")])
def test_tiff_round_trip(tmp_path, shape, axes):
    raw, label = _volume(shape), _volume(shape, np.int32) % 4
    tifffile.imwrite(tmp_path / "i.tif", raw, photometric="minisblack", metadata={"axes": axes})
    tifffile.imwrite(tmp_path / "l.tif", label, photometric="minisblack", metadata={"axes": axes})
    data = _load(TiffReader(), {"image": str(tmp_path / "i.tif"), "label": str(tmp_path / "l.tif")})
    np.testing.assert_array_equal(data["image"].numpy(), raw[None])
    np.testing.assert_array_equal(data["label"].numpy(), label[None])
    assert tuple(data["image"].meta["spatial_shape"]) == shape


def test_tiff_colour_samples_become_the_channel(tmp_path):
    rgb = _volume((5, 6, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    handle = TiffReader().read(str(tmp_path / "rgb.tif"))
    assert handle.channel_dim == 0 and handle.spatial_shape == (5, 6)
    loaded = LoadImage(reader=TiffReader(), dtype=None, ensure_channel_first=True)(str(tmp_path / "rgb.tif"))
    np.testing.assert_array_equal(loaded.numpy(), np.moveaxis(rgb, -1, 0))
    # the same channels wherever the file is opened: readers, open_volume (command line, segment_volume)
    with open_volume(tmp_path / "rgb.tif") as volume:
        assert volume.shape == (3, 5, 6) and volume.channel_dim == 0
        np.testing.assert_array_equal(volume[1, 2:4], rgb[2:4, :, 1])
    forced = TiffReader(channel_dim="no_channel").read(str(tmp_path / "rgb.tif"))
    assert forced.channel_dim is None and forced.spatial_shape == (3, 5, 6)


def test_tiff_leading_samples_stay_spatial(tmp_path):
    stack = _volume((3, 6, 7))
    tifffile.imwrite(tmp_path / "planar.tif", stack, photometric="rgb", planarconfig="separate")
    assert TiffReader().read(str(tmp_path / "planar.tif")).spatial_shape == (3, 6, 7)


def test_verify_suffix():
    assert HDF5Reader().verify_suffix(["a.h5:raw", "b.HDF5"])
    assert not HDF5Reader().verify_suffix(["a.h5", "b.tif"])
    assert ZarrReader().verify_suffix("a.zarr:raw") and TiffReader().verify_suffix("a.tiff")
    assert not TiffReader().verify_suffix("a.nii.gz") and not TiffReader().verify_suffix("a.mha")


def test_reader_by_dotted_name_as_in_bundle_configs(tmp_path):
    tifffile.imwrite(tmp_path / "i.tif", _volume((4, 5)))
    loaded = LoadImage(reader="spoco_monai.data.TiffReader", dtype=None)(str(tmp_path / "i.tif"))
    assert loaded.shape == (4, 5)


def test_real_dsb2018_tiffs_load(shared_data):
    folder = shared_data / "dsb2018_fluo" / "train"
    name = sorted((folder / "images").iterdir())[0].name
    data = _load(TiffReader(), {"image": str(folder / "images" / name), "label": str(folder / "labels" / name)})
    assert data["image"].ndim == 3 and data["image"].shape == data["label"].shape
    assert data["label"].max() > 0


@pytest.mark.parametrize(
    "relative, shape",
    [
        ("lm3d/gonuclear_1135.h5", (100, 100, 100)),
        ("lm3d/plantseg_ovule_sample.h5", (32, 128, 128)),
        ("em3d/gala_fibsem_train.h5", (50, 100, 200)),
    ],
)
def test_real_hdf5_volumes_load(shared_data, relative, shape):
    path = shared_data / relative
    data = _load(HDF5Reader(), {"image": f"{path}:raw", "label": f"{path}:label"})
    assert data["image"].shape == data["label"].shape == (1, *shape)
    assert data["label"].max() > 0


def test_rgb_tiff_is_channel_last_everywhere(tmp_path):
    """A 32x40 RGB TIFF is a 2D image of 3 channels for the default readers, open_volume and the dataset check."""
    rgb = _volume((32, 40, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    loaded = LoadImage(reader=default_readers(), dtype=None, ensure_channel_first=True)(str(tmp_path / "rgb.tif"))
    assert loaded.shape == (3, 32, 40)
    with open_volume(tmp_path / "rgb.tif") as volume:
        np.testing.assert_array_equal(np.asarray(volume), loaded.numpy())
    assert check_dataset([{"image": str(tmp_path / "rgb.tif")}], 2, label_key=None, in_channels=3)


def test_default_readers_cover_every_format_alike(tmp_path):
    image = _volume((3, 6, 7), np.float32)
    paths = [f"{tmp_path / 'v.h5'}:raw", str(tmp_path / "v.zarr"), str(tmp_path / "v.tif"), str(tmp_path / "v.nii.gz")]
    for path in paths:
        write_volume(path, image)
        np.testing.assert_array_equal(LoadImage(reader=default_readers(), dtype=None)(path).numpy(), image)


def test_bundle_load_transforms_log_no_failed_reader(tmp_path, caplog):
    """The bundle's LoadImaged reads each file with the reader of its suffix, so no other reader logs a failure."""
    parser = ConfigParser()
    parser.read_config([str(BUNDLE_CONFIGS / "common.json"), str(BUNDLE_CONFIGS / "inference.json")])
    preprocessing = parser.get_parsed_content("preprocessing")
    image = _volume((3, 6, 7), np.float32)
    paths = [f"{tmp_path / 'v.h5'}:raw", str(tmp_path / "v.tif"), str(tmp_path / "v.zarr"), str(tmp_path / "v.nii.gz")]
    with caplog.at_level(logging.DEBUG):
        for path in paths:
            write_volume(path, image)
            np.testing.assert_array_equal(preprocessing({"image": path})["image"][0].numpy(), image)
    assert not [record for record in caplog.records if "unable to load" in record.getMessage()]


def test_png_and_jpeg_images_read_like_every_other_format(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    colour = np.stack([grey, grey + 1, grey + 2], axis=-1)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with open_volume(tmp_path / "grey.png") as volume:
        assert volume.shape == (3, 4) and volume.channel_dim is None
        np.testing.assert_array_equal(volume[...], grey)
    with open_volume(tmp_path / "colour.png") as volume:
        assert volume.shape == (3, 3, 4) and volume.channel_dim == 0
        np.testing.assert_array_equal(volume[1], grey + 1)
    array, meta = ImageFileReader().get_data(ImageFileReader().read(str(tmp_path / "grey.png")))
    np.testing.assert_array_equal(array, grey)
    assert list(meta["spatial_shape"]) == [3, 4]


def test_labels_are_not_written_to_png(tmp_path):
    with pytest.raises(ValueError, match="PNG and JPEG are read, not written"):
        write_volume(tmp_path / "labels.png", np.zeros((4, 4), np.int32))
