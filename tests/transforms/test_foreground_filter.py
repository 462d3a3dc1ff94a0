from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from spoco_monai.transforms import RemoveBackgroundSegmentsd


def _bright_nuclei() -> tuple[torch.Tensor, torch.Tensor]:
    """A dark 1x12x12 image with two bright squares, and labels: the squares plus two background segments."""
    image = torch.full((1, 12, 12), 10.0)
    image[0, 2:5, 2:5] = 200.0
    image[0, 7:10, 6:10] = 180.0
    labels = torch.zeros((1, 12, 12), dtype=torch.int64)
    labels[0, :, :6] = 5  # background, left half (holds the first square's pixels too)
    labels[0, :, 6:] = 9  # background, right half
    labels[0, 2:5, 2:5] = 2
    labels[0, 7:10, 6:10] = 7
    return image, labels


def test_background_segments_are_removed_with_otsu():
    image, labels = _bright_nuclei()
    affine = torch.diag(torch.tensor([0.5, 0.5, 1.0]))
    data = {"image": image, "pred": MetaTensor(labels, affine=affine)}
    out = RemoveBackgroundSegmentsd("pred")(data)
    pred = out["pred"]
    assert isinstance(pred, MetaTensor) and pred.dtype == torch.int64 and torch.equal(pred.affine, affine)
    expected = torch.zeros_like(labels)
    expected[0, 2:5, 2:5] = 1
    expected[0, 7:10, 6:10] = 2
    assert torch.equal(pred.as_tensor(), expected)
    assert out["image"] is image


def test_dark_objects_and_a_fixed_threshold():
    image, labels = _bright_nuclei()
    out = RemoveBackgroundSegmentsd("pred", bright_foreground=False, threshold=100.0)({"image": image, "pred": labels})
    # below 100 is foreground now: the two background halves stay, the bright squares go
    left, right = out["pred"][0, 0, 0], out["pred"][0, 0, 11]
    assert {int(left), int(right)} == {1, 2}
    assert not out["pred"][0, 2:5, 2:5].any() and not out["pred"][0, 7:10, 6:10].any()


def test_numpy_labels_and_a_constant_image():
    labels = np.ones((1, 4, 4), dtype=np.int32)
    out = RemoveBackgroundSegmentsd("pred")({"image": np.zeros((1, 4, 4)), "pred": labels})
    # a constant image has no foreground: every segment is background
    assert isinstance(out["pred"], np.ndarray) and out["pred"].dtype == np.int32 and not out["pred"].any()


def test_three_dimensional_volume():
    image = torch.zeros((1, 4, 6, 6))
    image[0, 1:3, 1:4, 1:4] = 1.0
    labels = torch.ones((1, 4, 6, 6), dtype=torch.int64)
    labels[0, 1:3, 1:4, 1:4] = 3
    out = RemoveBackgroundSegmentsd("pred")({"image": image, "pred": labels})
    assert torch.equal(out["pred"][0] == 1, image[0] > 0) and int(out["pred"].max()) == 1


def test_bad_input_is_named():
    image, labels = _bright_nuclei()
    with pytest.raises(ValueError, match=r"shape \(1, \*S\)"):
        RemoveBackgroundSegmentsd("pred")({"image": image, "pred": labels[:, :6]})
    with pytest.raises(ValueError, match="channel 2"):
        RemoveBackgroundSegmentsd("pred", channel=2)({"image": image, "pred": labels})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        RemoveBackgroundSegmentsd("pred", min_foreground_fraction=-0.1)
