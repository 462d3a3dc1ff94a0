"""The pixel-to-segment contrast: exact values on tiny inputs, gradients, and its place beside the embedding loss."""

from __future__ import annotations

import math

import pytest
import torch

from spoco_monai.losses import PixelToSegmentLoss


class Constant(torch.nn.Module):
    """An embedding loss of 1.5 with a term record, standing in for SpocoLoss."""

    last_terms = {"pull": 1.5}

    def forward(self, embeddings, target, teacher=None, foreground=None):
        return embeddings.sum() * 0.0 + 1.5


def tiny() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One sample, one channel, 1x4 pixels: embeddings 0, 1, 3, 7 in segments 1, 1, 2, 0 (pixel 3 in none)."""
    embeddings = torch.tensor([[[[0.0, 1.0, 3.0, 7.0]]]], dtype=torch.float64)
    segments = torch.tensor([[[[1, 1, 2, 0]]]])
    return embeddings, segments, torch.tensor([[True, False, True, True]])


def test_exact_value_on_a_tiny_input():
    embeddings, segments, region = tiny()
    value = PixelToSegmentLoss(Constant(), temperature=1.0).contrast(embeddings, segments, region)
    # means 0.5 (segment 1) and 3 (segment 2); pixel 0: distances^2 0.25 and 9, pixel 2: 6.25 and 0; pixel 3 has no
    # segment and pixel 1 is outside the region
    expected = (math.log1p(math.exp(-8.75)) + math.log1p(math.exp(-6.25))) / 2
    assert value.item() == pytest.approx(expected, rel=1e-12)


def test_the_temperature_scales_the_distances():
    embeddings, segments, region = tiny()
    value = PixelToSegmentLoss(Constant(), temperature=4.0).contrast(embeddings, segments, region)
    expected = (math.log1p(math.exp(-8.75 / 4)) + math.log1p(math.exp(-6.25 / 4))) / 2
    assert value.item() == pytest.approx(expected, rel=1e-12)


def test_gradients_reach_every_pixel_of_a_segment():
    embeddings, segments, region = tiny()
    embeddings = torch.randn(2, 3, 2, 4, dtype=torch.float64, requires_grad=True)
    segments = torch.tensor([[[1, 1, 2, 2], [3, 3, 2, 0]], [[1, 2, 2, 2], [1, 1, 0, 0]]]).unsqueeze(1)
    region = torch.tensor([[[True, False, True, False], [True, True, False, True]], [[False] * 4, [True] * 4]])
    loss = PixelToSegmentLoss(Constant(), temperature=0.5)
    assert torch.autograd.gradcheck(lambda e: loss.contrast(e, segments, region), (embeddings,))
    loss.contrast(embeddings, segments, region).backward()
    # pixel (0, 0, 1) is outside the region but in segment 1: its mean carries its gradient
    assert embeddings.grad[0, :, 0, 1].abs().sum() > 0


def test_samples_without_two_segments_or_region_pixels_are_left_out():
    embeddings, segments, region = tiny()
    one_segment = torch.ones_like(segments)
    loss = PixelToSegmentLoss(Constant())
    zero = loss.contrast(embeddings.requires_grad_(), one_segment, region)
    assert zero.item() == 0.0 and zero.requires_grad
    assert loss.contrast(embeddings, segments, torch.zeros_like(region)).item() == 0.0


def test_the_contrast_covers_the_unlabeled_pixels_beside_the_embedding_loss():
    embeddings, segments, _ = tiny()
    target = torch.tensor([[[[0, 4, 0, 0]]]])  # pixel 1 labeled: the region is the other three
    loss = PixelToSegmentLoss(Constant(), weight=2.0, temperature=1.0)
    total = loss(embeddings, target, segments=segments)
    contrast = (math.log1p(math.exp(-8.75)) + math.log1p(math.exp(-6.25))) / 2
    assert total.item() == pytest.approx(1.5 + 2.0 * contrast, rel=1e-12)
    assert loss.last_terms == pytest.approx({"pull": 1.5, "pixel_to_segment": contrast})


def test_weight_zero_needs_no_segments_and_a_positive_weight_does():
    embeddings, _, _ = tiny()
    target = torch.zeros(1, 1, 1, 4, dtype=torch.long)
    assert PixelToSegmentLoss(Constant(), weight=0.0)(embeddings, target).item() == 1.5
    with pytest.raises(ValueError, match="needs low-level segments"):
        PixelToSegmentLoss(Constant())(embeddings, target)


def test_only_the_embedding_channels_are_compared():
    embeddings, segments, _ = tiny()
    with_foreground = torch.cat([embeddings, 100.0 * torch.randn_like(embeddings)], dim=1)
    target = torch.zeros(1, 1, 1, 4, dtype=torch.long)
    plain = PixelToSegmentLoss(Constant(), temperature=1.0)
    first = PixelToSegmentLoss(Constant(), temperature=1.0, embedding_dim=1)
    assert first(with_foreground, target, segments=segments).item() == pytest.approx(
        plain(embeddings, target, segments=segments).item(), rel=1e-12
    )


def test_max_pixels_keeps_every_kth_region_pixel():
    embeddings, segments, region = tiny()
    # region pixels with a segment: 0 and 2; a step of 2 keeps pixel 0 only
    value = PixelToSegmentLoss(Constant(), temperature=1.0, max_pixels=1).contrast(embeddings, segments, region)
    assert value.item() == pytest.approx(math.log1p(math.exp(-8.75)), rel=1e-12)
    everything = PixelToSegmentLoss(Constant(), temperature=1.0, max_pixels=2).contrast(embeddings, segments, region)
    assert everything.item() == pytest.approx((math.log1p(math.exp(-8.75)) + math.log1p(math.exp(-6.25))) / 2)
