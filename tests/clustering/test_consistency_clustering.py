from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import adapted_rand_error

from spoco_monai.clustering import consistency_clustering


def test_identical_views_keep_every_object(clean_embeddings):
    embeddings, labels = clean_embeddings
    segmentation = consistency_clustering(embeddings, embeddings, max_samples=3000, n_seeds=100)
    assert segmentation.dtype == np.int64 and segmentation.shape == labels.shape
    assert adapted_rand_error(labels, segmentation)[0] < 0.01
    assert segmentation.min() == 1


def test_objects_the_teacher_merges_are_dropped(clean_embeddings_2d):
    embeddings, labels = clean_embeddings_2d
    # merge in g the two objects of most similar size: each f-cluster then covers about half of the
    # anchors' g-neighbourhood, so both median IoUs are near 0.5 < 0.6
    sizes = np.bincount(labels.ravel())[1:]
    gaps = np.abs(sizes[:, None] - sizes[None]) + np.eye(sizes.size, dtype=np.int64) * sizes.sum()
    first, second = np.unravel_index(np.argmin(gaps), gaps.shape) + np.array(1)
    merged = (labels == first) | (labels == second)
    teacher = embeddings.copy()
    teacher[:, labels == second] = teacher[:, labels == first].mean(axis=1, keepdims=True)
    segmentation = consistency_clustering(embeddings, teacher, seed=2)
    assert (segmentation[merged] == 0).all() and (segmentation[~merged] > 0).all()
    assert adapted_rand_error(np.where(merged, 0, labels), segmentation)[0] < 0.01
    assert segmentation.max() == labels.max() - 2


def test_iou_on_a_subsample_gives_the_same_decision(clean_embeddings_2d):
    embeddings, labels = clean_embeddings_2d
    teacher = embeddings.copy()
    teacher[:, labels == 2] = teacher[:, labels == 1].mean(axis=1, keepdims=True)
    full = consistency_clustering(embeddings, teacher, seed=2, max_iou_samples=None)
    np.testing.assert_array_equal(consistency_clustering(embeddings, teacher, seed=2, max_iou_samples=800), full)


def test_threshold_zero_keeps_everything(clean_embeddings_2d):
    embeddings, labels = clean_embeddings_2d
    noise = np.random.default_rng(0).normal(scale=2.0, size=embeddings.shape).astype(np.float32)
    assert (consistency_clustering(embeddings, noise, iou_threshold=0.0) > 0).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"embeddings_g": np.zeros((3, 4, 5), np.float32)}, "same spatial shape"),
        ({"iou_threshold": 1.5}, r"iou_threshold must lie in \[0, 1\]"),
        ({"n_anchors": 0}, "n_anchors must be > 0"),
        ({"max_iou_samples": 0}, "max_iou_samples must be > 0"),
        ({"bandwidth": -1.0}, "bandwidth must be > 0"),
    ],
)
def test_invalid_input(kwargs, match):
    inputs = {"embeddings_f": np.zeros((3, 5, 5), np.float32), "embeddings_g": np.zeros((3, 5, 5), np.float32)}
    inputs.update(kwargs)
    with pytest.raises(ValueError, match=match):
        consistency_clustering(**inputs)
