from __future__ import annotations

import numpy as np
import pytest
import torch

from spoco_monai.clustering import (
    consistency_clustering,
    drop_background_segment,
    hdbscan_clustering,
    mean_shift_clustering,
    mutex_watershed,
)

METHODS = {
    "mws": lambda e, **kw: mutex_watershed(e, **kw),
    "hdbscan": lambda e, **kw: hdbscan_clustering(e, 100, **kw),
    "mean_shift": lambda e, **kw: mean_shift_clustering(e, **kw),
    "consistency": lambda e, **kw: consistency_clustering(e, e, **kw),
}


def test_drop_background_segment_by_hand():
    labels = np.array([[1, 1, 2, 3]])
    embeddings = np.array([[[0.0, 0.2, 5.0, 9.0]]], dtype=np.float32)
    # segment means: 0.1, 5, 9; the background reference 4 is closest to segment 2
    dropped = drop_background_segment(labels, torch.from_numpy(embeddings), np.array([4.0]))
    np.testing.assert_array_equal(dropped, [[1, 1, 0, 2]])


def test_unlabeled_pixels_are_never_the_background():
    labels = np.array([[0, 0, 1, 2]])
    embeddings = np.array([[[4.0, 4.0, 0.0, 9.0]]], dtype=np.float32)
    # the 0 pixels sit exactly on the reference; of the segments, 1 (at 0) is the closer one
    np.testing.assert_array_equal(drop_background_segment(labels, embeddings, [4.0]), [[0, 0, 0, 1]])


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_drops_the_background_object(clean_embeddings_2d, method):
    embeddings, labels = clean_embeddings_2d
    background = embeddings[:, labels == 3].mean(axis=1)
    without = METHODS[method](embeddings)
    assert (without > 0).all()  # off by default
    segmentation = METHODS[method](embeddings, background_embedding=background)
    assert (segmentation[labels == 3] == 0).all() and (segmentation[labels != 3] > 0).all()
    assert segmentation.max() == labels.max() - 1


def test_invalid_background_embedding():
    with pytest.raises(ValueError, match=r"background_embedding must have shape \(1,\)"):
        drop_background_segment(np.ones((1, 2), np.int64), np.zeros((1, 1, 2), np.float32), np.zeros(2))
