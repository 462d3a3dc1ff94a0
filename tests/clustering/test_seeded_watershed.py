import numpy as np
import pytest
import torch

from spoco_monai.clustering import default_offsets, seeded_watershed_from_affinities
from spoco_monai.clustering.affinities import overlap_slices
from spoco_monai.clustering.seeded_watershed import affinity_boundaries, distance_seeds


def two_touching_discs(shape=(24, 40), radius=8, centres=((12, 11), (12, 27))):
    """Labels 1 and 2 of two discs that touch along one column, 0 elsewhere."""
    rows, cols = np.indices(shape)
    labels = np.zeros(shape, dtype=np.int64)
    for value, (r, c) in enumerate(centres, start=1):
        labels[((rows - r) ** 2 + (cols - c) ** 2 <= radius**2) & (labels == 0)] = value
    return labels


def label_affinities(labels, offsets):
    """Affinity 1 inside an object, 0 across objects and for edges leaving the array."""
    affinities = np.zeros((len(offsets), *labels.shape), dtype=np.float32)
    for channel, offset in enumerate(offsets):
        shifted = np.full(labels.shape, -1)
        source, target = overlap_slices(offset, labels.shape)
        shifted[source] = labels[target]
        affinities[channel] = shifted == labels
    return affinities


def test_affinity_boundaries_exact_on_a_hand_made_edge():
    # one row of 4 pixels, offset (0, -1): the edge between pixels 1 and 2 has affinity 0.25
    affinities = np.array([[[1.0, 1.0, 0.25, 1.0]]], dtype=np.float32)  # the value at i is edge (i, i-1)
    boundaries = affinity_boundaries(affinities, [(0, -1)])
    np.testing.assert_array_equal(boundaries, [[0.0, 0.75, 0.75, 0.0]])


def test_distance_seeds_one_seed_per_disc():
    labels = two_touching_discs()
    distance, seeds = distance_seeds(labels > 0, min_distance=5)
    assert seeds.max() == 2
    assert set(np.unique(labels[seeds > 0])) == {1, 2}
    # the nearest background pixel to a centre lies at (1, 8): the first offset with 1 + 64 > 8^2
    assert distance.max() == pytest.approx(np.sqrt(65.0))


@pytest.mark.parametrize("as_tensor", [False, True])
def test_touching_discs_split_where_the_affinities_say(as_tensor):
    labels = two_touching_discs()
    offsets = default_offsets(2)
    affinities = label_affinities(labels, offsets)
    mask = labels > 0
    if as_tensor:
        affinities, mask = torch.from_numpy(affinities), torch.from_numpy(mask)
    result = seeded_watershed_from_affinities(affinities, offsets, 5, mask=mask, distance_weight=3.0)
    assert result.dtype == np.int64 and set(np.unique(result)) == {0, 1, 2}
    np.testing.assert_array_equal(result == 0, labels == 0)  # nothing outside the mask, everything inside
    # each object is exactly one disc (the border follows the affinities, not only the distance map)
    pairs = {(int(a), int(b)) for a, b in zip(result[labels > 0], labels[labels > 0])}
    assert len(pairs) == 2 and {b for _, b in pairs} == {1, 2}


def test_uniform_affinities_still_split_by_shape_and_drop_small_objects():
    labels = two_touching_discs()
    speck = np.zeros_like(labels, dtype=bool)
    speck[0, 0] = speck[0, 1] = True  # a 2-pixel island of foreground
    offsets = default_offsets(2)
    affinities = np.ones((len(offsets), *labels.shape), dtype=np.float32)
    kept = seeded_watershed_from_affinities(affinities, offsets, 5, mask=(labels > 0) | speck)
    assert kept.max() == 3 and (kept[speck] > 0).all()
    dropped = seeded_watershed_from_affinities(affinities, offsets, 5, mask=(labels > 0) | speck, min_size=3)
    assert dropped.max() == 2 and (dropped[speck] == 0).all()  # renumbered 1..N after dropping


def test_dense_tissue_without_mask_cells_cut_out_by_their_borders():
    # four 10x12 cells tile the image; their borders have affinity 0.1, the insides 0.9 (border strength 0.1)
    cells = np.repeat(np.repeat(np.array([[1, 2], [3, 4]]), 10, axis=0), 12, axis=1)
    offsets = default_offsets(2)
    affinities = np.where(label_affinities(cells, offsets) > 0, 0.9, 0.1).astype(np.float32)
    result = seeded_watershed_from_affinities(affinities, offsets, 3, boundary_threshold=0.5, distance_weight=0.0)
    assert result.min() == 1 and result.max() == 4  # every pixel has a cell
    pairs = {(int(a), int(b)) for a, b in zip(result.ravel(), cells.ravel())}
    assert len(pairs) == 4  # one label per cell, each cell whole
    # without the threshold the whole image is one interior: the borders no longer make separate seeds
    assert seeded_watershed_from_affinities(affinities, offsets, 8, distance_weight=0.0).max() < 4


def test_anisotropic_3d_keeps_seeds_apart_in_physical_units():
    # two balls along x in a volume with 2x coarser z: one seed each, two objects
    zz, yy, xx = np.indices((10, 20, 36))
    ball = lambda x0: (2 * (zz - 5)) ** 2 + (yy - 10) ** 2 + (xx - x0) ** 2 <= 64
    labels = np.where(ball(9), 1, np.where(ball(25), 2, 0))
    offsets = default_offsets(3, element_size=(2.0, 1.0, 1.0))
    affinities = label_affinities(labels, offsets)
    result = seeded_watershed_from_affinities(
        affinities, offsets, 5, mask=labels > 0, element_size=(2.0, 1.0, 1.0)
    )
    assert result.max() == 2
    np.testing.assert_array_equal(result == 0, labels == 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"boundary_threshold": 0.0}, "boundary_threshold"),
        ({"min_distance": 0}, "min_distance"),
        ({"distance_weight": -1.0}, "distance_weight"),
        ({"offsets": [(0, -1)]}, "one offset per affinity channel"),
    ],
)
def test_invalid_input(kwargs, match):
    offsets = default_offsets(2)
    arguments = {
        "affinities": np.ones((len(offsets), 8, 8), np.float32),
        "offsets": offsets,
        "mask": np.ones((8, 8), bool),
        "min_distance": 3,
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        seeded_watershed_from_affinities(**arguments)
