from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import adapted_rand_error

from spoco_monai.clustering import hdbscan_clustering, make_synthetic_embeddings

MIN_SIZE = 100


def test_recovers_clean_objects(clean_embeddings):
    embeddings, labels = clean_embeddings
    segmentation = hdbscan_clustering(embeddings, MIN_SIZE, max_samples=3000)
    assert segmentation.dtype == np.int64 and segmentation.shape == labels.shape
    assert adapted_rand_error(labels, segmentation)[0] < 0.01
    assert segmentation.min() == 1


def test_subsample_is_seeded_and_torch_input_accepted(clean_embeddings_2d):
    embeddings, labels = clean_embeddings_2d
    first = hdbscan_clustering(torch.from_numpy(embeddings), MIN_SIZE, max_samples=1000, seed=1)
    np.testing.assert_array_equal(first, hdbscan_clustering(embeddings, MIN_SIZE, max_samples=1000, seed=1))
    assert adapted_rand_error(labels, first)[0] < 0.01


def test_noise_is_filled_or_left_at_zero(clean_embeddings_2d):
    embeddings, labels = clean_embeddings_2d
    embeddings = embeddings.copy()
    embeddings[:, 10, 10] = 40.0  # an outlier pixel far from every object
    filled = hdbscan_clustering(embeddings, MIN_SIZE, max_samples=None)
    assert (filled > 0).all()
    holes = hdbscan_clustering(embeddings, MIN_SIZE, max_samples=None, fill_noise=False)
    assert holes[10, 10] == 0
    # with subsampling, unsampled pixels outside every cluster's radius are noise as well
    assert hdbscan_clustering(embeddings, MIN_SIZE, max_samples=500, fill_noise=False)[10, 10] == 0


def test_mask(clean_embeddings_2d):
    embeddings, labels = clean_embeddings_2d
    mask = labels != 2
    segmentation = hdbscan_clustering(embeddings, MIN_SIZE, mask=mask)
    assert (segmentation[~mask] == 0).all() and (segmentation[mask] > 0).all()
    assert adapted_rand_error(np.where(mask, labels, 0), segmentation)[0] < 0.01


def test_single_object_is_one_segment():
    embeddings, _ = make_synthetic_embeddings((32, 32), 1, noise_std=0.25, seed=0)
    np.testing.assert_array_equal(hdbscan_clustering(embeddings, MIN_SIZE), np.ones((32, 32), np.int64))


def test_no_cluster_gives_all_zero():
    embeddings = np.random.default_rng(0).uniform(size=(2, 6, 6)).astype(np.float32) * 100
    assert not hdbscan_clustering(embeddings, min_size=30, fill_noise=True).any()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"min_size": 1}, "min_size must be at least 2"),
        ({"min_size": 10, "epsilon": -0.1}, "epsilon must be >= 0"),
        ({"min_size": 10, "max_samples": 0}, "max_samples must be > 0"),
        ({"min_size": 10, "min_samples": 0}, "min_samples must be > 0"),
        ({"min_size": 10, "mask": np.ones((2, 2), bool)}, "spatial shape"),
    ],
)
def test_invalid_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hdbscan_clustering(np.zeros((3, 5, 5), np.float32), **kwargs)


def _two_distant_squares_with_one_embedding() -> tuple[np.ndarray, np.ndarray]:
    """A 2x40x40 embedding: background at (0, 0), two 12x12 squares far apart both at (3, 0); their labels."""
    embeddings = np.zeros((2, 40, 40), dtype=np.float32)
    labels = np.zeros((40, 40), dtype=np.int64)
    for index, (row, column) in enumerate([(2, 2), (24, 24)], start=1):
        embeddings[0, row : row + 12, column : column + 12] = 3.0
        labels[row : row + 12, column : column + 12] = index
    return embeddings, labels


def test_split_connected_separates_distant_objects_of_one_cluster():
    embeddings, labels = _two_distant_squares_with_one_embedding()
    merged = hdbscan_clustering(embeddings, 50, max_samples=None)
    assert len(np.unique(merged)) == 2  # background and one cluster holding both squares
    split = hdbscan_clustering(embeddings, 50, max_samples=None, split_connected=True)
    assert len(np.unique(split)) == 3 and split.min() == 1
    assert adapted_rand_error(labels + 1, split)[0] == pytest.approx(0.0)


def test_split_connected_merges_small_pieces_into_the_most_similar_neighbour():
    embeddings, _ = _two_distant_squares_with_one_embedding()
    # a 2x2 patch inside the background with the squares' embedding, but slightly off: its own piece after
    # splitting, too small to stay, and the only neighbour it touches is the background
    embeddings[0, 30:32, 4:6] = 2.9
    split = hdbscan_clustering(embeddings, 50, max_samples=None, split_connected=True)
    assert split[30, 4] == split[0, 0]
    assert len(np.unique(split)) == 3
