"""Per-item regions: each datalist item crops its own part of its files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from spoco_monai.transforms import ItemRegionCropd, region_slices


def _item(**extra):
    image = MetaTensor(torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6), meta={"filename_or_obj": "a.h5"})
    return {"image": image, "label": image.clone().long(), **extra}


def test_region_slices_reads_pairs_and_nulls():
    assert region_slices([[0, 63], None, [100, None]], 3) == (slice(0, 63), slice(None), slice(100, None))


@pytest.mark.parametrize("region", [[[0, 1]], [[0, 1, 2], None, None], "0:1"])
def test_region_slices_refuses_other_shapes(region):
    with pytest.raises(ValueError, match="per spatial axis"):
        region_slices(region, 3)


def test_item_region_wins_over_the_default_and_is_removed():
    out = ItemRegionCropd(["image", "label"], roi_slices=(slice(None), slice(None), slice(0, 1)))(
        _item(region=[[1, 2], [0, 2], None])
    )
    assert "region" not in out
    expected = np.arange(48).reshape(2, 4, 6)[1:2, 0:2, :]
    np.testing.assert_array_equal(out["image"][0].numpy(), expected)
    np.testing.assert_array_equal(out["label"][0].numpy(), expected)


def test_items_without_region_take_the_default():
    out = ItemRegionCropd(["image"], roi_slices=(slice(None), slice(None), slice(4, None)))(_item())
    np.testing.assert_array_equal(out["image"][0].numpy(), np.arange(48).reshape(2, 4, 6)[:, :, 4:])
    whole = ItemRegionCropd(["image"])(_item())
    assert whole["image"].shape == (1, 2, 4, 6)


def test_an_empty_region_names_the_file():
    with pytest.raises(ValueError, match=r"a\.h5: the region .* leaves nothing"):
        ItemRegionCropd(["image"])(_item(region=[[5, None], None, None]))


def test_a_bad_region_names_the_file():
    with pytest.raises(ValueError, match=r"a\.h5: region expected one \[start, stop\] pair"):
        ItemRegionCropd(["image"])(_item(region=[[0, 1]]))
