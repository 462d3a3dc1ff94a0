"""Masks grown inside boxes: a seeded watershed from the box's core against a margin around it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spoco_monai.transforms import GrowFromBoxes, GrowFromBoxesd, SimulateBoxes

SHAPE = (16, 16)


def ring_elevation() -> np.ndarray:
    """A boundary map: 0 inside the object (rows and columns 5..10), a wall of 1 then 2 around it, 0 beyond."""
    distance = np.maximum(np.abs(np.arange(16)[:, None] - 7.5), np.abs(np.arange(16)[None, :] - 7.5))
    elevation = np.zeros(SHAPE, np.float32)
    elevation[(distance > 3) & (distance <= 4)] = 1.0  # rows/columns 4 and 11
    elevation[(distance > 4) & (distance <= 5)] = 2.0  # rows/columns 3 and 12
    return elevation[None]


def test_the_object_is_the_core_basin_and_stops_at_the_wall():
    # a loose box, rows and columns 2..13: the watershed floods from its centre and from its margin (1 and 14)
    grown = GrowFromBoxes(elevation="image")(ring_elevation(), np.array([[4, 2, 2, 14, 14]]))[0]
    assert grown.dtype == np.int64 and set(np.unique(grown)) == {0, 4}
    inner = np.zeros(SHAPE, bool)
    inner[4:12, 4:12] = True  # the object and the first wall (1) reached from inside before level 2
    assert (grown[inner] == 4).all()
    within_outer_wall = np.zeros(SHAPE, bool)
    within_outer_wall[3:13, 3:13] = True
    assert (grown[~within_outer_wall] == 0).all()


def test_pixels_two_boxes_grow_are_left_unlabeled_and_nothing_grows_outside_a_box():
    # the walled object boxed twice (ids 1 and 2), and a third box on the flat part beyond the walls
    boxes = np.array([[1, 2, 2, 14, 14], [2, 3, 3, 13, 13], [3, 13, 0, 16, 3]])
    grown = GrowFromBoxes(elevation="image")(ring_elevation(), boxes)[0]
    assert (grown[4:12, 4:12] == 0).all()
    assert set(np.unique(grown)) <= {0, 1, 2, 3} and (grown == 3).any()
    inside_third = np.zeros(SHAPE, bool)
    inside_third[13:16, 0:3] = True
    assert (grown[~inside_third] != 3).all()


def test_a_bright_nucleus_in_its_tight_box_grows_to_its_shape():
    yy, xx = np.mgrid[:32, :32]
    disc = (yy - 15) ** 2 + (xx - 12) ** 2 <= 36
    image = np.where(disc, 1.0, 0.1).astype(np.float32)[None]
    # the tight box, as an annotator (or SimulateBoxes) draws it, beside a second nucleus's box at the image's edge
    labels = disc.astype(np.int64)
    labels[28:, 26:] = 2
    image[0, 28:, 26:] = 1.0
    boxes = SimulateBoxes(1.0)(labels[None])
    grown = GrowFromBoxes()(image, boxes)[0]
    iou = (grown == 1)[disc].sum() / ((grown == 1) | disc).sum()
    assert iou > 0.85
    assert (grown[29:, 27:] == 2).all() and (grown[28:, 26:] != 1).all()


def test_dictionary_version_and_tensors():
    image = torch.as_tensor(ring_elevation())
    boxes = np.array([[4, 2, 2, 14, 14]])
    expected = GrowFromBoxes(elevation="image")(ring_elevation(), boxes)
    data = {"image": image, "label": torch.zeros(1, *SHAPE), "boxes": torch.as_tensor(boxes)}
    out = GrowFromBoxesd("label", elevation="image")(data)
    assert isinstance(out["label"], torch.Tensor) and out["label"].dtype == torch.int64
    np.testing.assert_array_equal(out["label"].numpy(), expected)


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        (np.array([[0, 1, 1, 4, 4]]), "must have an id > 0"),
        (np.array([[1, 1, 1, 17, 4]]), "lie inside the image of shape (16, 16)"),
        (np.array([[1, 3, 1, 3, 4]]), "stop > start"),
        (np.array([[1, 1, 1, 1, 4, 4, 4]]), "expected (N, 5) boxes"),
    ],
)
def test_bad_boxes_are_named(boxes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GrowFromBoxes()(np.zeros((1, *SHAPE), np.float32), boxes)


def test_core_must_be_a_proper_fraction():
    with pytest.raises(ValueError, match=r"core must be in \(0, 1\)"):
        GrowFromBoxes(core=1.0)
