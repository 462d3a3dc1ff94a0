from __future__ import annotations

import json
import time

import numpy as np
import pytest
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from scipy.ndimage import binary_erosion, maximum_filter, minimum_filter

from spoco_monai.data import HDF5Reader, TiffReader, make_synthetic_volume, write_synthetic_dataset

SMALL_3D = (24, 48, 48)


def test_same_seed_same_volume_and_other_seed_differs():
    image_a, labels_a = make_synthetic_volume(SMALL_3D, seed=3)
    image_b, labels_b = make_synthetic_volume(SMALL_3D, seed=3)
    image_c, labels_c = make_synthetic_volume(SMALL_3D, seed=4)
    np.testing.assert_array_equal(image_a, image_b)
    np.testing.assert_array_equal(labels_a, labels_b)
    assert not np.array_equal(labels_a, labels_c)
    assert not np.allclose(image_a, image_c)


@pytest.mark.parametrize("shape", [(64, 80), (16, 40, 32)])
def test_shapes_dtypes_and_dense_consecutive_labels(shape):
    image, labels = make_synthetic_volume(shape, seed=0, mean_cell_size=12.0)
    assert image.shape == labels.shape == (1, *shape)
    assert image.dtype == np.float32 and labels.dtype == np.int32
    ids = np.unique(labels)
    assert ids[0] == 1, "dense labels: every voxel belongs to a cell"
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    assert len(ids) > 5


def test_boundaries_are_brighter_than_cell_interiors():
    image, labels = make_synthetic_volume((32, 64, 64), seed=1, noise=0.05)
    image, labels = image[0], labels[0]
    boundary = maximum_filter(labels, size=3) != minimum_filter(labels, size=3)
    interior = binary_erosion(~boundary, iterations=2)
    assert image[boundary].mean() > image[interior].mean() + 0.2


def test_anisotropy_makes_cells_shorter_along_z():
    _, labels = make_synthetic_volume((48, 48, 48), seed=0, mean_cell_size=16.0, anisotropy=3.0)
    # Mean run length of a label along each axis: the number of voxels per label change.
    extents = [labels.size / max(int((np.diff(labels[0], axis=axis) != 0).sum()), 1) for axis in range(3)]
    assert extents[0] < 0.6 * extents[1] and extents[0] < 0.6 * extents[2]


def test_cell_intensities_vary_between_cells():
    image, labels = make_synthetic_volume((64, 64), seed=2, noise=0.0, blur=0.0, mean_cell_size=16.0)
    sums = np.bincount(labels.ravel(), weights=image.ravel())[1:]
    counts = np.bincount(labels.ravel())[1:]
    assert np.std(sums / counts) > 0.02


@pytest.mark.slow
def test_default_volume_is_fast():
    start = time.perf_counter()
    image, _ = make_synthetic_volume(seed=0)
    elapsed = time.perf_counter() - start
    assert image.shape == (1, 96, 192, 192)
    assert elapsed < 10.0, f"make_synthetic_volume took {elapsed:.1f} s for 96x192x192"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shape": (10,)}, "shape must be 2 or 3"),
        ({"shape": (0, 5, 5)}, "shape must be 2 or 3"),
        ({"mean_cell_size": 0.0}, "mean_cell_size"),
        ({"anisotropy": -1.0}, "anisotropy"),
        ({"noise": -0.1}, "noise"),
        ({"blur": -1.0}, "blur"),
        ({"membrane_width": 0.0}, "membrane_width"),
    ],
)
def test_invalid_parameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_synthetic_volume(**{"shape": (8, 8), **kwargs})


@pytest.mark.parametrize("file_format, reader", [("nii.gz", None), ("tif", TiffReader()), ("h5", HDF5Reader())])
def test_written_dataset_loads_back_with_its_datalist(tmp_path, file_format, reader):
    shape = (8, 24, 24)
    datalist = write_synthetic_dataset(tmp_path, n_volumes=3, shape=shape, seed=5, format=file_format,
                                       mean_cell_size=8.0)
    assert len(datalist["training"]) == 2 and len(datalist["validation"]) == 1
    stored = json.loads((tmp_path / "datalist.json").read_text())
    assert not stored["training"][0]["image"].startswith("/"), "the JSON file holds relative paths"
    assert not list(tmp_path.rglob(".partial-*")), "no temporary file is left behind"

    load = Compose([LoadImaged(["image", "label"], reader=reader), EnsureChannelFirstd(["image", "label"])])
    item = load(datalist["validation"][0])
    image, labels = make_synthetic_volume(shape, seed=int(np.random.SeedSequence((5, 2)).generate_state(1)[0]),
                                          mean_cell_size=8.0)
    np.testing.assert_allclose(item["image"].numpy(), image, rtol=1e-6)
    np.testing.assert_array_equal(item["label"].numpy(), labels)


def test_write_dataset_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match="format must be one of"):
        write_synthetic_dataset(tmp_path, format="png")
    with pytest.raises(ValueError, match="n_volumes"):
        write_synthetic_dataset(tmp_path, n_volumes=0)
    with pytest.raises(ValueError, match="validation_fraction"):
        write_synthetic_dataset(tmp_path, validation_fraction=1.0)


def test_single_volume_dataset_has_no_validation_split(tmp_path):
    datalist = write_synthetic_dataset(tmp_path, n_volumes=1, shape=(16, 16), format="tif")
    assert len(datalist["training"]) == 1 and datalist["validation"] == []
