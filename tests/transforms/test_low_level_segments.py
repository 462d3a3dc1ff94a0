"""Low-level segments (superpixels) of an image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spoco_monai.transforms import LowLevelSegments, LowLevelSegmentsd


def test_segments_cover_the_image_and_respect_a_strong_edge():
    image = np.zeros((1, 32, 32), np.float32)
    image[:, :, 16:] = 100.0  # two halves
    segments = LowLevelSegments(segment_size=32.0)(image)
    assert segments.shape == (1, 32, 32) and segments.dtype == np.int64 and segments.min() == 1
    # about 1024 / 32 segments, none crossing the edge
    assert 16 <= len(np.unique(segments)) <= 48
    left, right = set(np.unique(segments[0, :, :16])), set(np.unique(segments[0, :, 16:]))
    assert not left & right


def test_the_intensity_range_does_not_matter_and_volumes_work():
    rng = np.random.default_rng(0)
    image = rng.random((1, 8, 16, 16)).astype(np.float32)
    segments = LowLevelSegments(segment_size=64.0)(image)
    np.testing.assert_array_equal(segments, LowLevelSegments(segment_size=64.0)(1000.0 * image + 5.0))
    assert segments.shape == (1, 8, 16, 16)


def test_dictionary_version_keeps_the_tensor_type():
    image = torch.rand(1, 16, 16)
    out = LowLevelSegmentsd("image", "segments", segment_size=16.0)({"image": image})
    assert isinstance(out["segments"], torch.Tensor) and out["segments"].dtype == torch.int64
    assert out["image"] is image


def test_bad_inputs():
    with pytest.raises(ValueError, match="segment_size"):
        LowLevelSegments(segment_size=0)
    with pytest.raises(ValueError, match="2 or 3 spatial axes"):
        LowLevelSegments()(np.zeros((16, 16)))
