"""Foreground masks inside the clustering, the blended foreground channel, and whole-image windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.filters import threshold_otsu
from torch import nn

from spoco_monai.clustering import embeddings_to_affinities
from spoco_monai.clustering.affinities import overlap_slices
from spoco_monai.inferers import SegmentationSettings, SpocoSlidingWindowInferer, segment_volume
from spoco_monai.inferers.block_grid import scan_interval, whole_image_window, window_starts
from spoco_monai.inferers.block_prediction import intensity_threshold
from spoco_monai.inferers.window_blending import blend_windows

OFFSETS_2D = [(-1, 0), (0, -1), (-3, 0), (0, -3)]


class DiscsNetwork(nn.Module):
    """Pointwise: embedding = the intensity times a fixed vector, foreground logit = 8 (intensity - 0.5).

    With no receptive field, a window's output at a pixel does not depend on the window, so windowed and
    whole-image predictions must agree everywhere.
    """

    def __init__(self, embedding_dim: int = 4) -> None:
        super().__init__()
        self.register_buffer("direction", torch.linspace(1.0, 3.0, embedding_dim)[None, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x * self.direction, 8.0 * (x - 0.5)], dim=1)


class SmoothingNetwork(nn.Module):
    """A 5x5 box filter: its output depends on the window near the window's borders only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = torch.ones(3, 1, 5, 5) / 25.0
        return nn.functional.conv2d(x.expand(-1, 3, -1, -1), kernel, padding=2, groups=3)


def two_discs(shape=(40, 56)) -> np.ndarray:
    """Two bright discs (intensity 1 and 2) on a dark background (0)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape, dtype=np.float32)
    image[(yy - 12) ** 2 + (xx - 14) ** 2 < 64] = 1.0
    image[(yy - 26) ** 2 + (xx - 38) ** 2 < 81] = 2.0
    return image


def _starts(shape, roi, overlap):
    return [window_starts(s, r, t) for s, r, t in zip(shape, roi, scan_interval(roi, overlap))]


def test_whole_image_window_rounds_up_to_32_and_respects_the_limit():
    assert whole_image_window((520, 696), (128, 128), 2**21) == (544, 704)
    assert whole_image_window((520, 696), (128, 128), 544 * 704 - 1) == (128, 128)
    assert whole_image_window((33, 64, 64), (16, 32, 32), None) == (16, 32, 32)


def test_foreground_channel_is_blended_as_a_probability():
    image = torch.from_numpy(two_discs())[None]
    blended = blend_windows(
        image, DiscsNetwork(), (32, 32), _starts(image.shape[1:], (32, 32), 0.5), offsets=OFFSETS_2D,
        foreground_channel=True,
    )
    assert blended.shape == (len(OFFSETS_2D) + 1, *image.shape[1:])
    torch.testing.assert_close(blended[-1], torch.sigmoid(8.0 * (image[0] - 0.5)), rtol=1e-5, atol=1e-6)
    # the affinities see the embedding channels only (compared on the edges inside the image)
    embeddings = DiscsNetwork()(image[None])[0, :-1]
    expected = torch.from_numpy(embeddings_to_affinities(embeddings.numpy(), OFFSETS_2D))
    for channel, offset in enumerate(OFFSETS_2D):
        inside, _ = overlap_slices(offset, image.shape[1:])
        torch.testing.assert_close(blended[channel][inside], expected[channel][inside], rtol=1e-5, atol=1e-5)


def test_whole_image_equals_windowed_away_from_seams():
    image = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 64, 96)).astype(np.float32))
    roi = (32, 32)
    windowed = blend_windows(image, SmoothingNetwork(), roi, _starts(image.shape[1:], roi, 0.5), output="embeddings")
    whole_roi = whole_image_window(image.shape[1:], roi, 2**20)
    whole = blend_windows(image, SmoothingNetwork(), whole_roi, [(0,), (0,)], output="embeddings")
    # the windows overlap by 16: a pixel further than 2 (the filter radius) from every window border of
    # the window that dominates it sees the same 5x5 neighbourhood; compare pixels 2+ away from all borders
    # of the 16-pixel window grid, where the Gaussian blend mixes equal values
    interior = torch.ones(image.shape[1:], dtype=torch.bool)
    for axis, size in enumerate(image.shape[1:]):
        near = torch.zeros(size, dtype=torch.bool)
        for border in range(0, size + 1, 16):
            near[max(0, border - 2) : border + 2] = True
        interior &= ~near.view([-1 if a == axis else 1 for a in range(2)])
    interior[:2], interior[-2:], interior[:, :2], interior[:, -2:] = False, False, False, False
    assert interior.sum() > 500
    torch.testing.assert_close(whole[:, interior], windowed[:, interior], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(whole, windowed)  # the seams do differ, so the comparison above means something


@pytest.mark.parametrize("foreground", ["network", "intensity"])
def test_masked_clustering_leaves_nothing_outside_the_mask(foreground):
    image = two_discs()
    settings = SegmentationSettings((32, 32), overlap=0.5, offsets=OFFSETS_2D, foreground=foreground)
    labels = segment_volume(image, DiscsNetwork(), settings, progress=False)
    assert set(np.unique(labels)) == {0, 1, 2}
    np.testing.assert_array_equal(labels > 0, image > 0.5)


@pytest.mark.parametrize("blend", ["affinities", "embeddings"])
def test_seeded_watershed_splits_touching_discs_the_mutex_watershed_merges(blend):
    # two touching discs of one intensity: identical embeddings, so every affinity inside the mask is 1
    yy, xx = np.mgrid[:40, :64]
    image = (((yy - 20) ** 2 + (xx - 20) ** 2 <= 100) | ((yy - 20) ** 2 + (xx - 39) ** 2 <= 100)).astype(np.float32)
    common = {"offsets": OFFSETS_2D, "foreground": "network", "blend": blend, "block_shape": (64, 64)}
    merged = segment_volume(image, DiscsNetwork(), SegmentationSettings((32, 32), **common), progress=False)
    watershed = SegmentationSettings(
        (32, 32), clustering="watershed", clustering_kwargs={"min_distance": 6, "distance_weight": 3.0}, **common
    )
    split = segment_volume(image, DiscsNetwork(), watershed, progress=False)
    assert merged.max() == 1
    assert split.max() == 2 and (split[:, :20] <= 1).all() and (split[:, 40:] != split[20, 20]).all()
    np.testing.assert_array_equal(split > 0, image > 0)


def test_foreground_threshold_cuts_the_network_probability():
    # the dim disc's foreground logit is 8 * (1 - 0.5) = 4 (probability 0.982), the bright one's 12
    image = two_discs()
    settings = SegmentationSettings((32, 32), offsets=OFFSETS_2D, foreground="network", foreground_threshold=0.99)
    labels = segment_volume(image, DiscsNetwork(), settings, progress=False)
    np.testing.assert_array_equal(labels > 0, image > 1.5)
    assert set(np.unique(labels)) == {0, 1}


def test_without_foreground_the_background_is_a_segment():
    settings = SegmentationSettings((32, 32), offsets=OFFSETS_2D)
    labels = segment_volume(two_discs(), DiscsNetwork(), settings, progress=False)
    assert labels.min() == 1 and labels.max() == 3


def test_inferer_whole_image_labels_equal_segment_volume():
    image = two_discs((50, 70))
    settings = SegmentationSettings((32, 32), offsets=OFFSETS_2D, foreground="network", whole_image_max_voxels=2**16)
    labels = SpocoSlidingWindowInferer(settings)(torch.from_numpy(image)[None, None], DiscsNetwork())
    whole = SegmentationSettings((64, 96), offsets=OFFSETS_2D, foreground="network")
    expected = segment_volume(image, DiscsNetwork(), whole, progress=False)
    np.testing.assert_array_equal(labels[0, 0].numpy(), expected)


def test_intensity_threshold_is_otsu_of_the_channel_mean():
    image = np.stack([two_discs(), 3 * two_discs()])
    assert intensity_threshold(image, has_channels=True) == pytest.approx(threshold_otsu(image.mean(0)))
    assert intensity_threshold(np.ones((4, 4), np.float32), has_channels=False) == 1.0
