from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import adapted_rand_error

from spoco_monai.clustering import (
    default_offsets,
    embeddings_to_affinities,
    mutex_watershed,
    mutex_watershed_from_affinities,
)


def test_recovers_clean_objects(clean_embeddings):
    embeddings, labels = clean_embeddings
    segmentation = mutex_watershed(embeddings)
    assert segmentation.dtype == np.int64 and segmentation.shape == labels.shape
    assert adapted_rand_error(labels, segmentation)[0] < 0.01
    assert segmentation.min() == 1 and np.unique(segmentation).size == segmentation.max()


def test_torch_input_and_strides(clean_embeddings):
    embeddings, labels = clean_embeddings
    from_torch = mutex_watershed(torch.from_numpy(embeddings))
    np.testing.assert_array_equal(from_torch, mutex_watershed(embeddings))
    strided = mutex_watershed(embeddings, strides=[2] * labels.ndim)
    assert adapted_rand_error(labels, strided)[0] < 0.01


def test_from_affinities_matches_embedding_path(clean_embeddings_2d):
    embeddings, _ = clean_embeddings_2d
    offsets = default_offsets(2)
    affinities = embeddings_to_affinities(embeddings, offsets)
    before = affinities.copy()
    from_affinities = mutex_watershed_from_affinities(affinities, offsets)
    np.testing.assert_array_equal(from_affinities, mutex_watershed(embeddings))
    np.testing.assert_array_equal(affinities, before)  # the caller's array is not modified


@pytest.mark.parametrize("as_tensor", [False, True])
def test_overwrite_input_works_in_place_with_the_same_labels(clean_embeddings_2d, as_tensor):
    embeddings, _ = clean_embeddings_2d
    offsets = default_offsets(2)
    affinities = np.ascontiguousarray(embeddings_to_affinities(embeddings, offsets), dtype=np.float32)
    expected = mutex_watershed_from_affinities(affinities, offsets, min_size=3)
    consumed = torch.from_numpy(affinities.copy()) if as_tensor else affinities.copy()
    labels = mutex_watershed_from_affinities(consumed, offsets, min_size=3, overwrite_input=True)
    np.testing.assert_array_equal(labels, expected)
    # the mutex channels were turned into repulsions in the input itself: no copy was made
    np.testing.assert_allclose(np.asarray(consumed)[2:], 1.0 - affinities[2:])
    np.testing.assert_array_equal(np.asarray(consumed)[:2], affinities[:2])


@pytest.mark.parametrize("presegment_threshold", [None, 0.5])
def test_hand_made_affinities_two_halves(presegment_threshold):
    # attractive 1 inside each half, weak (0.2) across; the mutex channel says the halves differ
    offsets = [(-1, 0), (0, -1), (0, -2)]
    halves = np.repeat([[1, 1, 2, 2]], 3, axis=0)
    affinities = np.ones((3, 3, 4), dtype=np.float32)
    affinities[1][:, 2] = 0.2
    affinities[2][:, 2:] = 0.0
    segmentation = mutex_watershed_from_affinities(affinities, offsets, presegment_threshold=presegment_threshold)
    np.testing.assert_array_equal(segmentation, halves)
    # without the mutex constraint the weak attractive edge merges everything
    affinities[2] = 1.0
    merged = mutex_watershed_from_affinities(affinities, offsets, presegment_threshold=presegment_threshold)
    np.testing.assert_array_equal(merged, np.ones_like(halves))


def test_region_graph_variant_matches_pixel_level(clean_embeddings):
    embeddings, labels = clean_embeddings
    regions = mutex_watershed(embeddings, presegment_threshold=0.5)
    assert adapted_rand_error(labels, regions)[0] < 0.01
    np.testing.assert_array_equal(regions, mutex_watershed(embeddings))
    mask = labels != 1
    masked = mutex_watershed(embeddings, presegment_threshold=0.5, mask=mask)
    assert (masked[~mask] == 0).all() and (masked[mask] > 0).all()
    assert adapted_rand_error(np.where(mask, labels, 0), masked)[0] < 0.01


def test_mask_sets_background_to_zero(clean_embeddings):
    embeddings, labels = clean_embeddings
    mask = labels != 1
    segmentation = mutex_watershed(embeddings, mask=torch.from_numpy(mask))
    assert (segmentation[~mask] == 0).all() and (segmentation[mask] > 0).all()
    assert np.unique(segmentation[mask]).size == segmentation.max()  # ids stay consecutive
    assert adapted_rand_error(np.where(mask, labels, 0), segmentation)[0] < 0.01


def test_min_size_merges_a_tiny_object_into_its_neighbour(clean_embeddings_2d):
    embeddings, labels = clean_embeddings_2d
    embeddings = embeddings.copy()
    # a 2x2 object with its own embedding far from every other one
    embeddings[:, 30:32, 30:32] = 50.0
    assert mutex_watershed(embeddings).max() == labels.max() + 1
    filtered = mutex_watershed(embeddings, min_size=5)
    assert filtered.max() == labels.max()
    assert np.bincount(filtered.ravel())[1:].min() >= 5
    # it joined the object it lies in, which is the only neighbour
    assert np.unique(filtered[labels == labels[30, 30]]).size == 1


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"offsets": [(-1, 0, 0)]}, ValueError, "2 integers"),
        ({"offsets": [(-1, 0)]}, ValueError, "at least the 2 attractive channels"),
        ({"affinity_delta_dist": -2.0}, ValueError, "affinity_delta_dist must be > 0"),
        ({"strides": [2]}, ValueError, "strides must be 2 positive integers"),
        ({"strides": [0, 1]}, ValueError, "strides must be 2 positive integers"),
        ({"mask": np.ones((3, 3), bool)}, ValueError, "spatial shape"),
        ({"mask": [[True]]}, TypeError, "mask must be a numpy array"),
        ({"min_size": -1}, ValueError, "min_size must be >= 0"),
        ({"presegment_threshold": 0.0}, ValueError, r"presegment_threshold must be None or in \(0, 1\]"),
        ({"presegment_threshold": 0.5, "strides": [2, 2]}, ValueError, "strides only apply"),
        ({"background_embedding": np.zeros(3)}, ValueError, r"background_embedding must have shape \(4,\)"),
    ],
)
def test_invalid_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        mutex_watershed(np.zeros((4, 6, 6), np.float32), **kwargs)


def test_from_affinities_invalid_channel_count():
    with pytest.raises(ValueError, match="one offset per affinity channel"):
        mutex_watershed_from_affinities(np.zeros((3, 6, 6), np.float32), default_offsets(2))
