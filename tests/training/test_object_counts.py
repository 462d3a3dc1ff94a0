"""Counting the objects a fine-tune's starting and trained weights find in the user's images."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from spoco_monai.inferers import SegmentationSettings
from spoco_monai.training.annotations import AnnotatedVolume
from spoco_monai.training.object_counts import MERGE_WARNING_DROP, central_block, count_objects, merge_warning

SHAPE = (16, 64)
# eight vertical stripes of 8 pixels, objects 1 to 8; the image value is the object id
LABELS = np.repeat(np.arange(1, 9), 8)[None, :].repeat(SHAPE[0], axis=0)


# object tables of ``lookup``: different objects 14 apart (far beyond 2 delta_d), pairs of stripes together, and
# every stripe at one point
SEPARATES = 10.0 * torch.eye(9)
PAIRS = 10.0 * torch.eye(9)[(torch.arange(9) + 1) // 2 * 2]
MERGES = torch.zeros(9, 9)


@pytest.fixture()
def volume(tmp_path) -> AnnotatedVolume:
    path = tmp_path / "image.tif"
    tifffile.imwrite(path, LABELS.astype(np.float32))
    return AnnotatedVolume(str(path), "labels.tif", SHAPE, 1, 2, 128, 0, None)


def settings() -> SegmentationSettings:
    return SegmentationSettings(
        SHAPE, blend="affinities", clustering="mws", clustering_kwargs={"min_size": 1}, normalize=False,
        offsets=((-1, 0), (0, -1), (-3, 0), (0, -3)), affinity_delta_dist=1.5,
    )


def test_a_small_image_is_taken_whole_and_a_large_one_by_its_central_block():
    assert central_block((4, 5, 6), voxels=120) == (slice(0, 4), slice(0, 5), slice(0, 6))
    # side round(1000 ** (1/3)) = 10, centred, clipped to the short first axis
    assert central_block((6, 20, 30), voxels=1000) == (slice(0, 6), slice(5, 15), slice(10, 20))
    assert central_block((100, 40), voxels=400) == (slice(40, 60), slice(10, 30))


def test_every_network_is_counted_on_the_same_image(volume, lookup):
    networks = {"trained": lookup(PAIRS), "starting": lookup(SEPARATES), "merged": lookup(MERGES)}
    counts = count_objects([volume], networks, settings())
    assert counts == {"trained": 4, "starting": 8, "merged": 1}


def test_counts_add_up_over_volumes_and_stay_inside_the_block(volume, lookup):
    # at most 512 pixels: sides of round(512 ** 0.5) = 23, so 16x23 pixels from column 20, stripes 3 to 6
    counts = count_objects([volume, volume], {"starting": lookup(SEPARATES)}, settings(), block_voxels=16 * 32)
    assert counts == {"starting": 8}


def test_a_drop_of_more_than_a_fifth_is_warned_about():
    assert MERGE_WARNING_DROP == 0.2
    assert merge_warning(100, 80, "em3d_neurons", "volume.h5:raw") is None
    assert merge_warning(100, 150, "em3d_neurons", "volume.h5:raw") is None
    assert merge_warning(0, 0, "em3d_neurons", "volume.h5:raw") is None
    warning = merge_warning(86, 57, "em3d_neurons", "volume.h5:raw")
    assert warning.startswith("warning: the fine-tuned network finds 34% fewer objects in your images than "
                              "em3d_neurons (57 against 86)")
    assert "spoco-monai segment volume.h5:raw starting.tif --model em3d_neurons" in warning
    assert "--val-images" in warning
