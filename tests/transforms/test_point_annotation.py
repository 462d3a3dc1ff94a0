"""SimulatePoints(d): clicks at exact places, seeded and recorded, and invalid settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from spoco_monai.transforms import AnnotationManifest, SimulatePoints, SimulatePointsd


def two_objects() -> np.ndarray:
    """(1, 6, 8): object 3 a 3x3 square, object 5 a touching 4x4 square, one ignored pixel."""
    label = np.zeros((1, 6, 8), dtype=np.int64)
    label[0, 1:4, 1:4] = 3
    label[0, 1:5, 4:8] = 5
    label[0, 5, 0] = -1
    return label


def test_center_clicks_the_deepest_pixel_first_in_raster_order() -> None:
    # object 3's centre (2, 2) is 2 deep; object 5's deepest pixels (2..3, 5..6) are 2 deep, (2, 5) comes first
    points = SimulatePoints()(two_objects())
    expected = np.zeros((1, 6, 8), dtype=np.int64)
    expected[0, 2, 2], expected[0, 2, 5] = 3, 5
    np.testing.assert_array_equal(points, expected)
    assert points.dtype == np.int64


def test_random_clicks_are_deep_inside_seeded_and_recorded(tmp_path) -> None:
    label = np.zeros((1, 9, 9), dtype=np.int64)
    label[0, 1:8, 1:8] = 1
    manifest = tmp_path / "points.json"
    points = SimulatePoints(location="random", depth=0.5, manifest_path=manifest)(label, "a.tif")
    where = np.argwhere(points[0] == 1)
    assert len(where) == 1
    # depth >= 2 (half of the largest, 4) keeps the click off the outer ring
    assert bool(((where >= 2) & (where <= 6)).all())
    again = SimulatePoints(location="random", depth=0.5)(label, "a.tif")
    np.testing.assert_array_equal(points, again)
    assert AnnotationManifest(manifest).read() == {"a.tif": {"objects": [[1, *where[0].tolist()]], "background": []}}
    clicked = [SimulatePoints(location="random", seed=s)(label, "a.tif")[0] == 1 for s in range(8)]
    others = {tuple(np.argwhere(click)[0]) for click in clicked}
    assert len(others) > 1


def test_background_clicks_avoid_objects_and_ignored_pixels() -> None:
    label = two_objects()
    points = SimulatePoints(background_points=4, seed=1)(label, "a.tif")
    background = points[0] == -1
    assert int(background.sum()) == 4
    assert bool((label[0][background] == 0).all())
    # more clicks asked than background pixels: all of them
    tiny = np.array([[[1, 0], [-1, 1]]])
    np.testing.assert_array_equal(SimulatePoints(background_points=5)(tiny, "t"), [[[1, -1], [0, 0]]])


def test_fraction_clicks_the_objects_the_sparse_annotation_keeps() -> None:
    from spoco_monai.transforms import SparseInstanceSampling

    label = np.zeros((1, 4, 20), dtype=np.int64)
    for index in range(10):
        label[0, :, 2 * index] = index + 1
    points = SimulatePoints(fraction=0.3, seed=4)(label, "img")
    sparse = SparseInstanceSampling(0.3, seed=4)(label, "img")
    assert set(np.unique(points[points > 0]).tolist()) == set(np.unique(sparse[sparse > 0]).tolist())
    assert int((points > 0).sum()) == 3


def test_dictionary_version_keeps_the_label_and_records_meta() -> None:
    label = MetaTensor(torch.as_tensor(two_objects(), dtype=torch.float32), meta={"filename_or_obj": "/d/x.tif"})
    out = SimulatePointsd(label_key="label", output_key="points")({"label": label})
    assert out["label"] is label
    points = out["points"]
    assert isinstance(points, MetaTensor) and points.dtype == torch.int64
    assert json.loads(points.meta["spoco_annotation"]) == {"objects": [[3, 2, 2], [5, 2, 5]], "background": []}
    with_id = SimulatePointsd(location="random", id_key="case")({"label": two_objects(), "case": "c1"})["points"]
    np.testing.assert_array_equal(with_id, SimulatePoints(location="random")(two_objects(), "c1"))


def test_no_objects_gives_an_empty_annotation() -> None:
    np.testing.assert_array_equal(SimulatePoints()(np.zeros((1, 3, 3), dtype=np.int64)), np.zeros((1, 3, 3)))


def test_3d_labels() -> None:
    label = np.zeros((1, 5, 5, 5), dtype=np.int64)
    label[0, 1:4, 1:4, 1:4] = 2
    points = SimulatePoints()(label)
    assert np.argwhere(points[0] == 2).tolist() == [[2, 2, 2]]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"location": "middle"}, ValueError, "location must be one of"),
        ({"depth": 1.5}, ValueError, "depth must be in"),
        ({"background_points": -1}, ValueError, "background_points"),
        ({"fraction": 0.0}, ValueError, "fraction must be in"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
    ],
)
def test_invalid_settings_raise(kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        SimulatePoints(**kwargs)


def test_invalid_labels_raise() -> None:
    with pytest.raises(ValueError, match="channel-first label"):
        SimulatePoints()(np.zeros((2, 3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="has no identity"):
        SimulatePoints(location="random")(two_objects())
    with pytest.raises(ValueError, match="ids must be >= -1"):
        SimulatePoints()(np.full((1, 2, 2), -2))
