"""Classical watersheds on hand-made images: touching discs, a membrane grid, anisotropy, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from spoco_monai.baselines import membrane_watershed, nuclei_watershed


def touching_discs() -> tuple[np.ndarray, np.ndarray]:
    """Two discs of radius 10 whose centres are 16 apart (they overlap), plus a separate small disc."""
    yy, xx = np.mgrid[:48, :80]
    truth = np.zeros((48, 80), dtype=np.int32)
    truth[(yy - 24) ** 2 + (xx - 20) ** 2 <= 100] = 1
    truth[((yy - 24) ** 2 + (xx - 36) ** 2 <= 100) & (truth == 0)] = 2
    truth[(yy - 24) ** 2 + (xx - 66) ** 2 <= 36] = 3
    return (truth > 0).astype(np.float32) * 100 + 10, truth


def test_touching_nuclei_are_split_and_the_background_stays_zero():
    image, truth = touching_discs()
    labels = nuclei_watershed(image, min_distance=5)
    assert labels.max() == 3 and labels.dtype == np.int32
    # the Gaussian smoothing may fill the two notches where the discs meet, nothing else
    assert np.count_nonzero((labels > 0) != (truth > 0)) <= 4
    # each true disc is covered by one label; the two touching ones meet half way
    for obj in (1, 2, 3):
        values, counts = np.unique(labels[truth == obj], return_counts=True)
        assert counts.max() / counts.sum() > 0.9, (obj, values, counts)


def test_tiny_specks_are_dropped():
    image = np.zeros((20, 20), dtype=np.float32)
    image[2:4, 2:4] = 100.0
    image[8:16, 8:16] = 100.0
    labels = nuclei_watershed(image, min_size=15, sigma=0.5)
    assert labels[3, 3] == 0 and labels.max() == 1


def membrane_grid(shape=(24, 48, 48), spacing=(8, 16, 16)) -> tuple[np.ndarray, np.ndarray]:
    """Box cells of ``spacing`` voxels separated by one-voxel bright membranes."""
    index = np.stack(np.meshgrid(*(np.arange(s) for s in shape), indexing="ij"))
    cells = np.zeros(shape, dtype=np.int64)
    for axis, step in enumerate(spacing):
        cells = cells * (shape[axis] // step) + index[axis] // step
    membrane = np.zeros(shape, dtype=bool)
    for axis, step in enumerate(spacing):
        membrane |= index[axis] % step == 0
    return membrane.astype(np.float32), cells + 1


def test_membrane_grid_gives_one_label_per_box_cell():
    image, truth = membrane_grid()
    labels = membrane_watershed(image, min_distance=3, sigma=0.5, element_size=(2.0, 1.0, 1.0))
    assert labels.min() == 1 and labels.max() == truth.max() == 3 * 3 * 3
    interior = image == 0
    # away from the membranes, every label is one cell
    pairs = np.unique(np.stack([truth[interior], labels[interior]]), axis=1)
    assert pairs.shape[1] == truth.max()


def test_constant_images():
    assert nuclei_watershed(np.ones((8, 8))).max() == 0
    np.testing.assert_array_equal(membrane_watershed(np.ones((4, 8, 8))), 1)


@pytest.mark.parametrize(
    "image, element_size, match",
    [
        (np.ones((2, 3, 4, 5)), None, "2D or 3D"),
        (np.array([[0.0, np.nan], [1.0, 1.0]]), None, "NaN"),
        (np.ones((4, 4)), (1.0, 0.0), "element_size"),
    ],
)
def test_bad_input(image, element_size, match):
    with pytest.raises(ValueError, match=match):
        nuclei_watershed(image, element_size=element_size)
    with pytest.raises(ValueError, match=match):
        membrane_watershed(image, element_size=element_size)
