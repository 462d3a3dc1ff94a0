"""PointLocalizationLoss (LCFCN terms) by hand on tiny inputs, the split targets, gradients and invalid input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spoco_monai.losses import PointLocalizationLoss
from spoco_monai.losses.point_localization import line_split, watershed_split


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def row(values: list[float], dtype=torch.float64) -> torch.Tensor:
    """(1, 1, 1, P) logits of a 1 x P image."""
    return torch.tensor(values, dtype=dtype).reshape(1, 1, 1, -1)


def clicks(values: list[int]) -> torch.Tensor:
    return torch.tensor(values).reshape(1, 1, 1, -1)


def test_two_blobs_one_click_each_by_hand():
    # blobs (z > 0): {0} and {2, 3}, one click each: no false positive, no line split; the watershed of 1 - p from
    # the clicks 0 and 3 floods pixel 2 (1 - p = 0.38) from click 3 before pixel 1 (0.73), which both basins reach:
    # pixel 1 is the line
    loss = PointLocalizationLoss()
    value = loss(row([2.0, -1.0, 0.5, 3.0, -2.0]), clicks([1, 0, 0, 2, 0]))
    image = (softplus(-3.0) + softplus(-2.0)) / 2
    point = (softplus(-2.0) + softplus(-3.0)) / 2
    split = softplus(-1.0)
    assert loss.last_terms == pytest.approx({"image": image, "point": point, "split": split, "false_positive": 0.0})
    assert value.item() == pytest.approx(image + point + split, rel=1e-12)


def test_line_split_and_false_positive_by_hand():
    # blob {0..4} holds clicks 0 and 3: the bisector at 1.5 takes pixels 1 and 2 with weight 2 - 1 = 1;
    # blob {6} holds no click: a false positive
    z = [1.0, 1.0, 1.0, 1.0, 1.0, -1.0, 2.0]
    loss = PointLocalizationLoss(split="line", image_weight=0.0, point_weight=0.5)
    value = loss(row(z), clicks([1, 0, 0, 2, 0, 0, 0]))
    assert loss.last_terms["split"] == pytest.approx(softplus(1.0), rel=1e-12)
    assert loss.last_terms["false_positive"] == pytest.approx(softplus(2.0), rel=1e-12)
    assert loss.last_terms["point"] == pytest.approx(softplus(-1.0), rel=1e-12)
    assert value.item() == pytest.approx(0.5 * softplus(-1.0) + softplus(1.0) + softplus(2.0), rel=1e-12)


def test_background_clicks_and_an_image_without_objects():
    # no object click: image term BCE(max z, 0); the background click is a point target 0; every blob is a
    # false positive
    loss = PointLocalizationLoss()
    loss(row([0.5, -1.0, 2.0]), clicks([0, -1, 0]))
    false_positive = (softplus(0.5) + softplus(2.0)) / 2
    expected = {"image": softplus(2.0), "point": softplus(-1.0), "split": 0.0, "false_positive": false_positive}
    assert loss.last_terms == pytest.approx(expected)


def test_terms_are_means_over_the_samples_that_have_them():
    z = torch.cat([row([2.0, -1.0]), row([-3.0, -1.0])])
    points = torch.cat([clicks([1, 0]), clicks([0, 0])])
    loss = PointLocalizationLoss()
    loss(z, points)
    # point: only sample 0 has a click; image: both samples
    assert loss.last_terms["point"] == pytest.approx(softplus(-2.0))
    assert loss.last_terms["image"] == pytest.approx(((softplus(-2.0) + softplus(-1.0)) / 2 + softplus(-1.0)) / 2)


def test_line_split_in_2d_weights_by_the_number_of_merged_objects():
    blobs = np.zeros((5, 9), dtype=np.int64)
    blobs[:, :] = 1
    two = line_split(blobs, np.array([[2, 0], [2, 4]]))
    expected = np.zeros((5, 9))
    expected[:, 2] = 1.0
    np.testing.assert_array_equal(two, expected)
    # three clicks in a row: 0-4 and 4-8 are the nearest pairs, the bisectors at columns 2 and 6 get weight 2
    three = line_split(blobs, np.array([[2, 0], [2, 4], [2, 8]]))
    expected[:, 6] = 1.0
    np.testing.assert_array_equal(three, 2 * expected)
    # clicks in different blobs split nothing
    blobs[:, 3:] = 2
    np.testing.assert_array_equal(line_split(blobs, np.array([[2, 0], [2, 4]])), np.zeros((5, 9)))


def test_watershed_split_needs_two_clicks():
    probabilities = np.full((3, 3), 0.7)
    np.testing.assert_array_equal(watershed_split(probabilities, np.array([[1, 1]])), np.zeros((3, 3)))
    lines = watershed_split(np.array([[0.9, 0.2, 0.1, 0.3, 0.8]]), np.array([[0, 0], [0, 4]]))
    np.testing.assert_array_equal(lines, [[0, 0, 1, 0, 0]])


def test_gradient_matches_finite_differences_in_2d_and_3d():
    generator = torch.Generator().manual_seed(0)
    for shape in ((2, 1, 5, 6), (1, 1, 3, 4, 4)):
        logits = torch.randn(shape, generator=generator, dtype=torch.float64).requires_grad_(True)
        points = torch.zeros(shape, dtype=torch.int64)
        flat = points.view(-1)
        flat[[0, 7, 13, 20]] = torch.tensor([1, 2, -1, 3])
        loss = PointLocalizationLoss()
        assert torch.autograd.gradcheck(lambda x: loss(x, points), (logits,))


def test_float32_and_zero_weights():
    z, points = row([2.0, -1.0, 0.5, 3.0, -2.0], torch.float32), clicks([1, 0, 0, 2, 0])
    assert PointLocalizationLoss()(z, points).dtype == torch.float32
    off = PointLocalizationLoss(image_weight=0, point_weight=0, split_weight=0, false_positive_weight=0)
    logits = z.clone().requires_grad_(True)
    off(logits, points).backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize(
    "logits, points, error, message",
    [
        (torch.zeros(1, 1, 2, 2, dtype=torch.int64), torch.zeros(1, 1, 2, 2, dtype=torch.int64), TypeError, "logits"),
        (torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), TypeError, "points must be an integer tensor"),
        (torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3, dtype=torch.int64), ValueError, "expected logits and points"),
        (torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.int64), ValueError, "expected logits and points"),
        (torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), -2), ValueError, "point values must be >= -1"),
    ],
)
def test_invalid_input_raises(logits, points, error, message):
    with pytest.raises(error, match=message):
        PointLocalizationLoss()(logits, points)


def test_invalid_options_raise():
    with pytest.raises(ValueError, match="split must be one of"):
        PointLocalizationLoss(split="blob")
    with pytest.raises(ValueError, match="image_weight must be >= 0"):
        PointLocalizationLoss(image_weight=-1.0)
