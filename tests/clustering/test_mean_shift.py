from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import adapted_rand_error

from spoco_monai.clustering import mean_shift_clustering
from spoco_monai.clustering.mean_shift import find_modes


@pytest.mark.parametrize("kernel", ["flat", "gaussian"])
def test_recovers_clean_objects(clean_embeddings, kernel):
    embeddings, labels = clean_embeddings
    segmentation = mean_shift_clustering(embeddings, kernel=kernel, max_samples=3000, n_seeds=100)
    assert segmentation.dtype == np.int64 and segmentation.shape == labels.shape
    assert adapted_rand_error(labels, segmentation)[0] < 0.01


def test_seeded_and_torch_matches_numpy(clean_embeddings_2d):
    embeddings, _ = clean_embeddings_2d
    from_numpy = mean_shift_clustering(embeddings, seed=4)
    np.testing.assert_array_equal(from_numpy, mean_shift_clustering(torch.from_numpy(embeddings), seed=4))


def test_modes_of_two_point_groups():
    # two tight groups at 0 and 10 on a line; every mode lies at a group mean
    reference = torch.tensor([[0.0], [0.1], [-0.1], [10.0], [10.2], [9.8]])
    modes = find_modes(reference, 0.5, "flat", 100, 6, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(np.sort(modes[:, 0].numpy()), [0.0, 10.0], atol=1e-6)


def test_seeding_rounds_find_an_object_no_first_seed_hits():
    # 999 points at 0, one at 5: a single seed lands on the big group; the next round covers the last point
    reference = torch.zeros(1000, 2)
    reference[-1] = 5.0
    modes = find_modes(reference, 0.5, "flat", 100, 1, torch.Generator().manual_seed(0))
    assert modes.shape[0] == 2


def test_mask(clean_embeddings_2d):
    embeddings, labels = clean_embeddings_2d
    mask = labels > 2
    segmentation = mean_shift_clustering(embeddings, mask=mask)
    assert (segmentation[~mask] == 0).all() and (segmentation[mask] > 0).all()
    assert adapted_rand_error(np.where(mask, labels, 0), segmentation)[0] < 0.01
    assert not mean_shift_clustering(embeddings, mask=np.zeros(labels.shape, bool)).any()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"bandwidth": 0.0}, "bandwidth must be > 0"),
        ({"kernel": "epanechnikov"}, "kernel must be one of"),
        ({"max_iter": 0}, "max_iter must be > 0"),
        ({"n_seeds": 0}, "n_seeds must be > 0"),
        ({"max_samples": 0}, "max_samples must be > 0"),
    ],
)
def test_invalid_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mean_shift_clustering(np.zeros((3, 5, 5), np.float32), **kwargs)
