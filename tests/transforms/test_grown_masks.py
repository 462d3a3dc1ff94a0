"""GrowFromPoints(d): masks grown from clicks by a seeded watershed, limited by a radius."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from spoco_monai.losses import SpocoLoss
from spoco_monai.transforms import GrowFromPoints, GrowFromPointsd, SimulatePoints

RIDGES = np.array([[[0, 1, 5, 9, 1, 0, 1, 9, 5, 1, 0]]], dtype=np.float32)
CLICKS = np.array([[[-1, 0, 0, 0, 0, 1, 0, 0, 0, 0, -1]]])


def test_the_object_basin_by_hand():
    # the object's basin reaches pixels 4 and 6 (elevation 1) before the background's reaches 2 and 8 (5), so the
    # walls 3 and 7 are flooded from the object first
    np.testing.assert_array_equal(GrowFromPoints(10, "image")(RIDGES, CLICKS), [[[0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0]]])


def test_the_radius_limits_the_mask():
    np.testing.assert_array_equal(GrowFromPoints(1, "image")(RIDGES, CLICKS), [[[0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0]]])
    np.testing.assert_array_equal(GrowFromPoints(1.5, "image")(RIDGES, CLICKS), [[[0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0]]])
    np.testing.assert_array_equal(GrowFromPoints(2, "image")(RIDGES, CLICKS), [[[0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0]]])


def test_inverted_floods_a_probability_map_from_its_peaks():
    probability = np.array([[[0.1, 0.9, 0.8, 0.2, 0.7, 0.9, 0.1]]], dtype=np.float32)
    clicks = np.array([[[0, 1, 0, 0, 0, 2, 0]]])
    # -p is flooded: each object takes its side of the valley at pixel 3 (which object takes the valley itself is
    # the watershed's order of visits, not checked)
    grown = GrowFromPoints(10, "inverted")(probability, clicks)
    assert grown[0, 0, :3].tolist() == [1, 1, 1] and grown[0, 0, 4:].tolist() == [2, 2, 2]


def test_gradient_masks_stay_inside_touching_objects():
    image = np.zeros((1, 12, 12), dtype=np.float32)
    image[0, 3:7, 3:7], image[0, 3:7, 7:10] = 4, 8
    truth = np.zeros((12, 12), dtype=np.int64)
    truth[3:7, 3:7], truth[3:7, 7:10] = 2, 1
    clicks = SimulatePoints(background_points=2, seed=0)(truth[None], "t")
    grown = GrowFromPoints(10)(image, clicks)[0]
    for object_id in (1, 2):
        assert bool((truth[grown == object_id] == object_id).all())
        assert int((grown == object_id).sum()) >= 0.6 * int((truth == object_id).sum())


def test_scribbles_grow_from_every_stroke_pixel_and_no_clicks_give_nothing():
    image = np.zeros((1, 1, 9), dtype=np.float32)
    strokes = np.array([[[0, 3, 3, 3, 0, 0, 0, 0, 0]]])
    # distance 1 from the stroke reaches pixels 0..4
    np.testing.assert_array_equal(GrowFromPoints(1, "image")(image, strokes), [[[3, 3, 3, 3, 3, 0, 0, 0, 0]]])
    np.testing.assert_array_equal(GrowFromPoints(3)(image, np.zeros((1, 1, 9), dtype=np.int64)), np.zeros((1, 1, 9)))


def test_dictionary_version_and_types_feed_the_spoco_loss():
    data = {"image": torch.as_tensor(RIDGES), "points": MetaTensor(torch.as_tensor(CLICKS)), "label": None}
    out = GrowFromPointsd("label", radius=10, elevation="image")(data)
    assert isinstance(out["label"], MetaTensor) and out["label"].dtype == torch.int64
    assert out["label"].tolist() == [[[0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0]]]
    embeddings = torch.randn(1, 2, 1, 11, dtype=torch.float64)
    assert torch.isfinite(SpocoLoss(seed=0)(embeddings, out["label"].as_tensor()[None]))


def test_invalid_input_raises():
    with pytest.raises(ValueError, match="radius must be > 0"):
        GrowFromPoints(0)
    with pytest.raises(ValueError, match="elevation must be one of"):
        GrowFromPoints(3, "distance")
    with pytest.raises(ValueError, match="expected an image"):
        GrowFromPoints(3)(np.zeros((1, 4, 4)), np.zeros((1, 4, 5), dtype=np.int64))
    with pytest.raises(ValueError, match="annotation values must be >= -1"):
        GrowFromPoints(3)(np.zeros((1, 4, 4)), np.full((1, 4, 4), -2))
