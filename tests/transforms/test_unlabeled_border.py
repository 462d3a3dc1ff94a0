"""UnlabeledBorder(d): the outer voxels of every labeled object become unlabeled, the rest stays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from spoco_monai.transforms import UnlabeledBorder, UnlabeledBorderd

LABEL = np.array(
    [
        [7, 7, 7, 7, 0, 0],
        [7, 7, 7, 7, 0, -1],
        [7, 7, 7, 7, 3, 3],
        [7, 7, 7, 7, 3, 3],
    ]
)


def test_each_object_loses_its_outer_voxels_against_anything_else():
    # object 7 touches the image edge on the left, top and bottom: only voxels with a face neighbour of another id
    # inside the image are border; of object 3 (2x2, in the corner) only the corner voxel has no other neighbour;
    # 0 and -1 stay
    expected = np.array(
        [
            [7, 7, 7, 0, 0, 0],
            [7, 7, 7, 0, 0, -1],
            [7, 7, 7, 0, 0, 0],
            [7, 7, 7, 0, 0, 3],
        ]
    )
    np.testing.assert_array_equal(UnlabeledBorder(1)(LABEL), expected)


def test_a_wider_border_and_the_channel_axis():
    label = torch.as_tensor(LABEL)[None]
    out = UnlabeledBorder(2)(label)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 4, 6)
    np.testing.assert_array_equal(out[0, :, :2].numpy(), np.full((4, 2), 7))
    assert (out[0, :, 2:4] == 0).all()


def test_the_dictionary_version_keeps_the_metadata():
    label = MetaTensor(torch.as_tensor(LABEL[None]), meta={"filename_or_obj": "a.tif"})
    out = UnlabeledBorderd("label", width=1)({"label": label})["label"]
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "a.tif"
    assert int((out == 7).sum()) == 12


@pytest.mark.parametrize("width", [0, -1, 1.5, True])
def test_invalid_width(width):
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        UnlabeledBorder(width)
