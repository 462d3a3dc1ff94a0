"""ForegroundTarget by hand, and the training pipeline keeping image, label and foreground aligned."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose, RandAxisFlipd, RandRotate90d

from spoco_monai.transforms import ForegroundTarget, ForegroundTargetd, RandCropByLabeledInstancesd

LABEL = np.array([[[0, 1, 2], [-1, 0, 3]]])


def test_dense_labels_by_hand():
    np.testing.assert_array_equal(ForegroundTarget()(LABEL), [[[0, 1, 1], [-1, 0, 1]]])
    assert ForegroundTarget()(LABEL).dtype == np.float32


def test_sparse_labels_leave_unlabeled_unknown():
    target = ForegroundTarget(unlabeled_is_background=False)(torch.from_numpy(LABEL).float())
    torch.testing.assert_close(target, torch.tensor([[[-1.0, 1, 1], [-1, -1, 1]]]))


def test_dictionary_version_adds_the_key_and_checks_its_options():
    data = ForegroundTargetd("label")({"label": LABEL})
    np.testing.assert_array_equal(data["foreground"], ForegroundTarget()(LABEL))
    with pytest.raises(ValueError, match="one label key"):
        ForegroundTargetd(["label", "other"])
    with pytest.raises(TypeError, match="unlabeled_is_background"):
        ForegroundTarget(unlabeled_is_background=1)


@pytest.mark.parametrize("seed", range(4))
def test_crop_flip_and_rotation_keep_image_label_and_foreground_aligned(seed):
    # the image carries the label id as its intensity: after the spatial transforms it must still do so
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 6, size=(1, 40, 50)).astype(np.float32)
    data = ForegroundTargetd("label")({"image": label.copy(), "label": label})
    keys = ["image", "label", "foreground"]
    pipeline = Compose(
        [
            RandCropByLabeledInstancesd(keys, "label", (24, 24), num_samples=3, pos=0.9),
            RandAxisFlipd(keys, prob=0.5),
            RandRotate90d(keys, prob=0.5, spatial_axes=(0, 1)),
        ]
    ).set_random_state(seed)
    for patch in pipeline(data):
        image, patch_label = np.asarray(patch["image"]), np.asarray(patch["label"])
        np.testing.assert_array_equal(image, patch_label)
        np.testing.assert_array_equal(np.asarray(patch["foreground"]), ForegroundTarget()(patch_label))


def test_annotated_fraction_adds_the_unknown_pixels_foreground_prior():
    # 2 labeled pixels of 8 labeled or unknown ones (one pixel ignored), p = 0.5: the image holds about 4
    # foreground pixels, so the 6 unknown pixels hold 2 of them: prior 1/3
    label = np.array([[[1, 1, 0], [0, 0, 0], [0, -1, 0]]])
    target = ForegroundTarget(unlabeled_is_background=False, annotated_fraction=0.5)(label)
    np.testing.assert_array_equal(target[0], [[1, 1, -1], [-1, -1, -1], [-1, -1, -1]])
    np.testing.assert_allclose(target[1], np.full((3, 3), 1 / 3), rtol=1e-6)
    as_tensor = ForegroundTarget(unlabeled_is_background=False, annotated_fraction=0.5)(torch.from_numpy(label))
    torch.testing.assert_close(as_tensor, torch.from_numpy(target))
    # an estimate beyond the unknown pixels is clipped to 1
    full = ForegroundTarget(unlabeled_is_background=False, annotated_fraction=0.1)(label)
    np.testing.assert_array_equal(full[1], np.ones((3, 3), np.float32))


def test_annotated_fraction_is_checked():
    with pytest.raises(ValueError, match="positive-unlabeled"):
        ForegroundTarget(annotated_fraction=0.1)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        ForegroundTarget(unlabeled_is_background=False, annotated_fraction=0.0)
    with pytest.raises(ValueError, match="channel-first"):
        ForegroundTarget(unlabeled_is_background=False, annotated_fraction=0.5)(np.zeros((2, 3, 3)))
