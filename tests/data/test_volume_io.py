from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import h5py
import nibabel as nib
import numpy as np
import pytest
import tifffile
import zarr

from spoco_monai.data.volume_io import (
    LazyVolume,
    UnreadableVolumeError,
    check_can_create,
    create_volume,
    ome_zarr_level_shapes,
    open_volume,
    parse_volume_path,
    volume_mean_std,
    write_volume,
)

VOLUME = np.arange(6 * 7 * 8, dtype=np.int32).reshape(6, 7, 8)
REGION = (slice(1, 4), slice(2, 7), slice(0, 8, 3))


@pytest.mark.parametrize(
    "path, file, key, volume_format",
    [
        ("a/image.nii.gz", "a/image.nii.gz", None, "nifti"),
        ("image.NII", "image.NII", None, "nifti"),
        ("stack.tiff", "stack.tiff", None, "tiff"),
        ("data.h5:raw", "data.h5", "raw", "hdf5"),
        ("data.hdf5:/group/raw", "data.hdf5", "group/raw", "hdf5"),
        ("volume.zarr", "volume.zarr", None, "zarr"),
        ("volume.zarr/", "volume.zarr", None, "zarr"),
        ("volume.zarr:labels/s0", "volume.zarr", "labels/s0", "zarr"),
        ("data.h5", "data.h5", None, "hdf5"),
    ],
)
def test_parse_volume_path(path, file, key, volume_format):
    parsed = parse_volume_path(path)
    assert (parsed.file, parsed.key, parsed.format) == (Path(file), key, volume_format)


@pytest.mark.parametrize(
    "path, message",
    [
        ("image.bmp", "cannot tell the volume format"),
        ("image.nii:raw", "cannot tell the volume format"),
    ],
)
def test_parse_invalid_path_raises(path, message):
    with pytest.raises(ValueError, match=message):
        parse_volume_path(path)


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii", "v.tif", "v.h5:group/raw", "v.zarr", "v.zarr:labels/s0"])
def test_round_trip(tmp_path, name):
    path = f"{tmp_path / name}"
    write_volume(path, VOLUME, chunks=(3, 4, 4))
    with open_volume(path) as volume:
        assert isinstance(volume, LazyVolume)
        assert volume.shape == VOLUME.shape and volume.dtype == VOLUME.dtype
        np.testing.assert_array_equal(volume[REGION], VOLUME[REGION])
        np.testing.assert_array_equal(np.asarray(volume), VOLUME)
    assert [p.name for p in tmp_path.iterdir()] == [name.split(":")[0]]  # no temporary left


def test_chunked_formats_are_chunked(tmp_path):
    write_volume(tmp_path / "v.zarr", VOLUME, chunks=(3, 4, 4))
    assert zarr.open_array(tmp_path / "v.zarr", mode="r").chunks == (3, 4, 4)
    write_volume(f"{tmp_path / 'v.h5'}:raw", VOLUME, chunks=(3, 4, 4))
    with h5py.File(tmp_path / "v.h5") as handle:
        assert handle["raw"].chunks == (3, 4, 4)


def test_compressed_tiff_reads_lazily_through_zarr(tmp_path):
    tifffile.imwrite(tmp_path / "tiled.tif", VOLUME[:, :, :], compression="zlib", tile=(16, 16))
    with open_volume(tmp_path / "tiled.tif") as volume:
        np.testing.assert_array_equal(volume[REGION], VOLUME[REGION])


def test_nifti_channels_are_moved_first_and_affine_kept(tmp_path):
    channel_last = np.moveaxis(np.stack([VOLUME, -VOLUME]), 0, -1)  # (x, y, z, c) as NIfTI stores it
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    nib.save(nib.Nifti1Image(channel_last, affine), tmp_path / "c.nii.gz")
    with open_volume(tmp_path / "c.nii.gz") as volume:
        assert volume.shape == (2, 6, 7, 8)
        np.testing.assert_array_equal(volume[1, 2], -VOLUME[2])
        channels = (slice(None), *REGION)
        np.testing.assert_array_equal(volume[channels], np.stack([VOLUME, -VOLUME])[channels])
        np.testing.assert_array_equal(volume.affine, affine)


def test_nifti_written_with_affine(tmp_path):
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    write_volume(tmp_path / "v.nii.gz", VOLUME, affine=affine)
    np.testing.assert_array_equal(nib.load(tmp_path / "v.nii.gz").affine, affine)


@pytest.mark.parametrize("name", ["v.zarr", "v.h5:raw", "v.tif", "v.nii.gz"])
def test_failed_write_leaves_nothing(tmp_path, name):
    path = f"{tmp_path / name}"
    with pytest.raises(RuntimeError, match="half way"):
        with create_volume(path, VOLUME.shape, VOLUME.dtype) as target:
            target[:3] = VOLUME[:3]
            raise RuntimeError("half way")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["v.zarr", "v.h5:raw", "v.tif"])
def test_existing_volume_raises_unless_overwrite(tmp_path, name):
    path = f"{tmp_path / name}"
    write_volume(path, VOLUME)
    with pytest.raises(FileExistsError, match="already exists"):
        write_volume(path, np.zeros_like(VOLUME))
    with open_volume(path) as volume:
        np.testing.assert_array_equal(volume[:], VOLUME)
    write_volume(path, np.zeros_like(VOLUME), overwrite=True)
    with open_volume(path) as volume:
        assert not np.asarray(volume).any()
    assert [p.name for p in tmp_path.iterdir()] == [name.split(":")[0]]


def test_missing_volume_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no volume"):
        open_volume(tmp_path / "missing.zarr")
    write_volume(f"{tmp_path / 'v.h5'}:raw", VOLUME)
    with pytest.raises(FileNotFoundError, match="no dataset 'other'"):
        open_volume(f"{tmp_path / 'v.h5'}:other")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_can_create(tmp_path / "missing" / "v.zarr")
    with pytest.raises(ValueError, match="needs a dataset name"):
        check_can_create(tmp_path / "v.h5")


def test_container_without_dataset_reads_its_only_one(tmp_path):
    write_volume(f"{tmp_path / 'one.h5'}:group/raw", VOLUME)
    with open_volume(tmp_path / "one.h5") as volume:
        np.testing.assert_array_equal(volume[REGION], VOLUME[REGION])
    write_volume(f"{tmp_path / 'one.h5'}:label", VOLUME)
    with pytest.raises(ValueError, match=r"one\.h5 holds 2 datasets \['group/raw', 'label'\]"):
        open_volume(tmp_path / "one.h5")


def test_damaged_file_is_one_line_naming_it(tmp_path):
    # compressed data of the first plane overwritten: the structure is intact, decompression fails
    tifffile.imwrite(tmp_path / "v.tif", np.random.default_rng(0).random((40, 48, 48)), compression="zlib")
    content = (tmp_path / "v.tif").read_bytes()
    (tmp_path / "v.tif").write_bytes(content[:300] + bytes(200) + content[500:])
    with open_volume(tmp_path / "v.tif") as volume, pytest.raises(UnreadableVolumeError) as error:
        np.asarray(volume)
    assert str(error.value).startswith(f"cannot read {tmp_path / 'v.tif'} (") and "\n" not in str(error.value)
    (tmp_path / "w.h5").write_bytes(b"not an HDF5 file")
    with pytest.raises(UnreadableVolumeError, match=r"cannot read .*w\.h5:raw .*truncated or corrupt"):
        open_volume(f"{tmp_path / 'w.h5'}:raw")


def test_element_size_from_the_file(tmp_path):
    write_volume(f"{tmp_path / 'v.h5'}:raw", VOLUME)
    with h5py.File(tmp_path / "v.h5", "a") as handle:
        handle["raw"].attrs["element_size_um"] = (2.0, 0.5, 0.5)
    with open_volume(f"{tmp_path / 'v.h5'}:raw") as volume:
        assert volume.element_size == (2.0, 0.5, 0.5)
    nib.save(nib.Nifti1Image(VOLUME, np.diag([0.5, 0.5, 2.0, 1.0])), tmp_path / "v.nii.gz")
    with open_volume(tmp_path / "v.nii.gz") as volume:
        assert volume.element_size == (0.5, 0.5, 2.0)
    write_volume(tmp_path / "v.tif", VOLUME)
    with open_volume(tmp_path / "v.tif") as volume:
        assert volume.element_size is None


def test_tiff_voxel_size_from_imagej_and_ome_metadata(tmp_path):
    stack = VOLUME.astype(np.float32)
    tifffile.imwrite(
        tmp_path / "ij.tif", stack, imagej=True, resolution=(4.0, 2.0), metadata={"spacing": 3.0, "axes": "ZYX"}
    )
    with open_volume(tmp_path / "ij.tif") as volume:
        assert volume.element_size == (3.0, 0.5, 0.25)
    metadata = {"axes": "CYX", "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.125}
    tifffile.imwrite(tmp_path / "two.ome.tif", VOLUME[:2], ome=True, metadata=metadata)
    with open_volume(tmp_path / "two.ome.tif") as volume:
        assert volume.channel_dim == 0 and volume.element_size == (0.5, 0.125)
    # resolution tags alone (often a printer's dpi) give no voxel size
    tifffile.imwrite(tmp_path / "dpi.tif", VOLUME[0], resolution=(72.0, 72.0))
    with open_volume(tmp_path / "dpi.tif") as volume:
        assert volume.element_size is None


def test_tiff_output_keeps_the_voxel_size(tmp_path):
    with create_volume(tmp_path / "labels.tif", VOLUME.shape, np.int32, element_size=(2.0, 0.5, 0.25)) as target:
        target[...] = VOLUME
    with open_volume(tmp_path / "labels.tif") as volume:
        assert volume.element_size == (2.0, 0.5, 0.25) and volume.channel_dim is None
        np.testing.assert_array_equal(volume[...], VOLUME)


def test_real_hdf5_volume_reads_lazily():
    data = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lm3d" / "gonuclear_1135.h5"
    if not data.exists():
        pytest.skip(f"shared data not found at {data}")
    with open_volume(f"{data}:raw") as volume, h5py.File(data) as handle:
        assert volume.shape == (100, 100, 100)
        np.testing.assert_array_equal(volume[10:20, :5, 50:], handle["raw"][10:20, :5, 50:])


def test_volume_mean_std_streams_exact_statistics(tmp_path):
    values = np.random.default_rng(0).normal(3.0, 2.0, size=(9, 5, 4)).astype(np.float32)
    write_volume(tmp_path / "v.zarr", values)
    with open_volume(tmp_path / "v.zarr") as volume:
        mean, std = volume_mean_std(volume, max_elements=40)  # two z-slices per read
    np.testing.assert_allclose((mean, std), (values.mean(dtype=np.float64), values.std(dtype=np.float64)), rtol=1e-6)


def test_volume_mean_std_reads_a_single_channel_in_bounded_slabs():
    values = np.random.default_rng(1).normal(-1.0, 0.5, size=(1, 6, 5, 4)).astype(np.float32)

    class Recording:
        shape = values.shape
        reads: list[int] = []

        def __getitem__(self, index):
            part = values[index]
            self.reads.append(part.size)
            return part

    volume = Recording()
    mean, std = volume_mean_std(volume, max_elements=12)  # one channel holds 120 values: read 3 rows of 4 at once
    assert max(volume.reads) == 12 and sum(volume.reads) == values.size
    np.testing.assert_allclose((mean, std), (values.mean(dtype=np.float64), values.std(dtype=np.float64)), rtol=1e-12)


@pytest.mark.parametrize("container, key", [("v.h5", "group/seg"), ("v.zarr", "labels/seg")])
def test_overwrite_replaces_only_the_named_dataset(tmp_path, container, key):
    file = tmp_path / container
    write_volume(f"{file}:raw", VOLUME)
    write_volume(f"{file}:{key}", np.ones_like(VOLUME))
    write_volume(f"{file}:{key.split('/')[0]}/other", VOLUME + 1)
    with pytest.raises(FileExistsError, match="only 'group/seg'|only 'labels/seg'"):
        write_volume(f"{file}:{key}", np.zeros_like(VOLUME))
    write_volume(f"{file}:{key}", np.full_like(VOLUME, 7), overwrite=True)
    for name, expected in (("raw", VOLUME), (key, np.full_like(VOLUME, 7)), (f"{key.split('/')[0]}/other", VOLUME + 1)):
        with open_volume(f"{file}:{name}") as volume:
            np.testing.assert_array_equal(volume[:], expected)
    assert [p.name for p in tmp_path.iterdir()] == [container]


@pytest.mark.parametrize("container", ["v.h5", "v.zarr"])
def test_failed_overwrite_keeps_the_old_dataset(tmp_path, container):
    path = f"{tmp_path / container}:seg"
    write_volume(f"{tmp_path / container}:raw", VOLUME)
    write_volume(path, VOLUME)
    with pytest.raises(RuntimeError, match="half way"):
        with create_volume(path, VOLUME.shape, VOLUME.dtype, overwrite=True) as target:
            target[:3] = 0
            raise RuntimeError("half way")
    with open_volume(path) as volume:
        np.testing.assert_array_equal(volume[:], VOLUME)
    if container == "v.h5":
        with h5py.File(tmp_path / container, "r") as handle:
            assert sorted(handle) == ["raw", "seg"]
    else:
        assert sorted(p.name for p in (tmp_path / container).iterdir() if p.is_dir()) == ["raw", "seg"]


def test_overwrite_never_deletes_a_zarr_group(tmp_path):
    write_volume(f"{tmp_path / 'v.zarr'}:raw", VOLUME)
    with pytest.raises(ValueError, match="is a zarr group"):
        write_volume(tmp_path / "v.zarr", VOLUME, overwrite=True)
    with open_volume(f"{tmp_path / 'v.zarr'}:raw") as volume:
        np.testing.assert_array_equal(volume[:], VOLUME)


def test_unwritable_locations_are_refused_with_their_cause(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(NotADirectoryError) as raised:
        check_can_create(tmp_path / "notes.txt" / "a" / "v.zarr")
    assert str(raised.value) == (
        f"cannot write {tmp_path}/notes.txt/a/v.zarr: {tmp_path}/notes.txt is a file, not a folder."
    )
    write_volume(f"{tmp_path / 'v.h5'}:raw", VOLUME)
    access = os.access
    read_only = {tmp_path: os.ST_RDONLY, tmp_path / "v.h5": 0}
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) not in read_only and access(path, mode))
    monkeypatch.setattr(os, "statvfs", lambda path: SimpleNamespace(f_flag=read_only[Path(path)]))
    with pytest.raises(PermissionError) as raised:
        check_can_create(tmp_path / "v.zarr")
    assert str(raised.value) == f"cannot write {tmp_path}/v.zarr: {tmp_path} is on a read-only file system."
    # a dataset added to an existing HDF5 file changes that file
    with pytest.raises(PermissionError) as raised:
        check_can_create(f"{tmp_path / 'v.h5'}:seg")
    assert str(raised.value) == f"cannot write {tmp_path}/v.h5: {tmp_path}/v.h5 is not writable for this user."
    monkeypatch.undo()
    with open_volume(f"{tmp_path / 'v.h5'}:raw") as volume:
        np.testing.assert_array_equal(volume[:], VOLUME)


def test_ome_zarr_levels_halve_the_spatial_axes_until_one_chunk_holds_a_level():
    assert ome_zarr_level_shapes((40, 100, 64), (16, 32, 32)) == [(40, 100, 64), (20, 50, 32), (10, 25, 16)]
    assert ome_zarr_level_shapes((2, 9, 8, 8), (1, 8, 8, 8)) == [(2, 9, 8, 8), (2, 5, 4, 4)]  # the channel axis stays
    assert ome_zarr_level_shapes((16, 16), (16, 16)) == [(16, 16)]


def test_written_ome_zarr_labels_carry_their_pyramid(tmp_path):
    labels = np.arange(5 * 9 * 6, dtype=np.int32).reshape(5, 9, 6)
    path = tmp_path / "labels.ome.zarr"
    write_volume(path, labels, chunks=(2, 4, 4))
    with open_volume(path) as level0, open_volume(f"{path}:1") as level1, open_volume(f"{path}:2") as level2:
        np.testing.assert_array_equal(level0[:], labels)
        np.testing.assert_array_equal(level1[:], labels[::2, ::2, ::2])
        np.testing.assert_array_equal(level2[:], labels[::4, ::4, ::4])
        assert level2.element_size == (4.0, 4.0, 4.0)
