"""Objects from points: localisation peaks as seeds, grown over embedding borders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spoco_monai.clustering import localization_seeds, point_clustering, point_seeded_watershed


def two_objects_on_background() -> tuple[np.ndarray, np.ndarray]:
    """(2, 6, 10) piecewise constant embeddings: objects 1 and 2 (3x3 squares) on a background, and the truth."""
    truth = np.zeros((6, 10), dtype=np.int64)
    truth[1:4, 1:4], truth[2:5, 5:8] = 1, 2
    centres = np.array([[0.0, 5.0], [0.0, 0.0], [6.0, 0.0]], dtype=np.float32)  # background, object 1, object 2
    return centres[truth].transpose(2, 0, 1).copy(), truth


def test_embedding_radius_keeps_the_objects_without_a_mask():
    embeddings, truth = two_objects_on_background()
    seeds = np.zeros_like(truth)
    seeds[2, 2], seeds[3, 6] = 4, 9
    labels = point_seeded_watershed(embeddings, seeds, embedding_radius=1.0)
    np.testing.assert_array_equal(labels, truth)


def test_without_radius_or_mask_the_seeds_take_the_whole_image_and_a_mask_cuts_it():
    embeddings, truth = two_objects_on_background()
    seeds = np.zeros_like(truth)
    seeds[2, 2], seeds[3, 6] = 1, 2
    everywhere = point_seeded_watershed(embeddings, seeds)
    assert bool((everywhere > 0).all())
    np.testing.assert_array_equal(everywhere[truth > 0], truth[truth > 0])
    np.testing.assert_array_equal(point_seeded_watershed(torch.as_tensor(embeddings), seeds, mask=truth > 0), truth)


def test_min_size_background_clicks_and_no_seeds():
    embeddings, truth = two_objects_on_background()
    seeds = np.full_like(truth, 0)
    seeds[2, 2], seeds[3, 6], seeds[0, 9] = 1, 2, -1
    labels = point_seeded_watershed(embeddings, seeds, mask=truth > 0, min_size=10)
    assert labels.max() == 0
    np.testing.assert_array_equal(point_seeded_watershed(embeddings, np.zeros_like(truth)), np.zeros_like(truth))


def test_localization_seeds_at_peaks_above_the_threshold():
    localization = np.zeros((5, 9), dtype=np.float32)
    localization[2, 2], localization[2, 3] = 0.9, 0.7
    localization[1, 7] = 0.8
    localization[4, 5] = 0.4  # below the threshold
    seeds = localization_seeds(torch.as_tensor(localization), threshold=0.5, min_distance=2)
    expected = np.zeros((5, 9), dtype=np.int64)
    expected[1, 7], expected[2, 2] = 1, 2
    np.testing.assert_array_equal(seeds, expected)


def test_seeds_from_a_localization_map_end_to_end():
    embeddings, truth = two_objects_on_background()
    localization = np.where(truth > 0, 0.6, 0.1).astype(np.float32)
    localization[2, 2], localization[3, 6] = 0.95, 0.9
    labels = point_seeded_watershed(embeddings, localization_seeds(localization), embedding_radius=1.0)
    np.testing.assert_array_equal(labels, truth)


def test_invalid_input_raises():
    embeddings, truth = two_objects_on_background()
    with pytest.raises(ValueError, match="seeds must have the embeddings' spatial shape"):
        point_seeded_watershed(embeddings, truth[:, :5])
    with pytest.raises(ValueError, match="embedding_radius must be > 0"):
        point_seeded_watershed(embeddings, truth, embedding_radius=0.0)
    with pytest.raises(ValueError, match="threshold"):
        localization_seeds(np.zeros((3, 3)), threshold=1.0)
    with pytest.raises(ValueError, match="min_distance must be an int >= 1"):
        localization_seeds(np.zeros((3, 3)), min_distance=0)


def test_point_clustering_finds_two_objects_from_their_localization_peaks():
    embeddings, truth = two_objects_on_background()
    localization = np.full(truth.shape, 0.05, dtype=np.float32)
    localization[2, 2], localization[3, 6] = 0.8, 0.7
    labels = point_clustering(torch.as_tensor(embeddings), torch.as_tensor(localization), min_distance=2,
                              embedding_radius=1.0)
    np.testing.assert_array_equal(labels, truth)


def test_point_clustering_without_a_peak_above_the_threshold_finds_nothing():
    embeddings, truth = two_objects_on_background()
    localization = np.where(truth > 0, 0.45, 0.05).astype(np.float32)
    labels = point_clustering(embeddings, localization, threshold=0.5, embedding_radius=1.0)
    np.testing.assert_array_equal(labels, np.zeros_like(truth))
    # the same map finds both objects, one seed per plateau, once the threshold is below it
    np.testing.assert_array_equal(point_clustering(embeddings, localization, threshold=0.4, mask=truth > 0), truth)


def test_point_clustering_refuses_a_localization_of_another_shape():
    embeddings, truth = two_objects_on_background()
    with pytest.raises(ValueError, match=r"localization must have the embeddings' spatial shape \(6, 10\)"):
        point_clustering(embeddings, np.zeros((6, 9), dtype=np.float32))
