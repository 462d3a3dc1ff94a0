"""SimulateBoxes(d): half-open bounding boxes of the chosen objects."""

from __future__ import annotations

import numpy as np

from spoco_monai.transforms import AnnotationManifest, SimulateBoxes, SimulateBoxesd


def label() -> np.ndarray:
    values = np.zeros((1, 10, 14), dtype=np.int64)
    values[0, 1:6, 1:12] = 3
    values[0, 6:9, 2:5] = 5
    values[0, 9, 0] = -1
    return values


def test_boxes_by_hand(tmp_path) -> None:
    manifest = tmp_path / "boxes.json"
    boxes = SimulateBoxes(manifest_path=manifest)(label(), "l.tif")
    np.testing.assert_array_equal(boxes, [[3, 1, 1, 6, 12], [5, 6, 2, 9, 5]])
    assert boxes.dtype == np.int64
    assert AnnotationManifest(manifest).read() == {"l.tif": [[3, 1, 1, 6, 12], [5, 6, 2, 9, 5]]}


def test_a_fraction_boxes_some_objects_and_no_objects_gives_no_rows() -> None:
    boxes = SimulateBoxes(fraction=0.5, seed=2)(label(), "l.tif")
    assert boxes.shape == (1, 5) and boxes[0, 0] in (3, 5)
    assert SimulateBoxes()(np.zeros((1, 2, 3, 4), dtype=np.int64)).shape == (0, 7)


def test_dictionary_version() -> None:
    out = SimulateBoxesd()({"label": label()})
    np.testing.assert_array_equal(out["boxes"], SimulateBoxes()(label()))
