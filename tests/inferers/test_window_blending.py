from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from inference_fakes import NUM_OBJECTS, OFFSETS_3D, LabelLookupNetwork
from monai.inferers import Merger, sliding_window_inference

from spoco_monai.clustering import embeddings_to_affinities
from spoco_monai.inferers.block_grid import scan_interval, window_starts
from spoco_monai.inferers.window_blending import BlendingWorkspace, WindowBlender, blend_windows


def _starts(shape, roi, overlap):
    return [window_starts(s, r, t) for s, r, t in zip(shape, roi, scan_interval(roi, overlap))]


def test_blended_embeddings_equal_monai_sliding_window(image_3d):
    image = torch.from_numpy(image_3d[:, :24, :40, :50])
    network = LabelLookupNetwork(NUM_OBJECTS, noise_scale=0.5)
    roi = (16, 32, 32)
    ours = blend_windows(image, network, roi, _starts(image.shape[1:], roi, 0.5), output="embeddings")
    monai = sliding_window_inference(image[None], roi, 2, network, overlap=0.5, mode="gaussian")[0]
    torch.testing.assert_close(ours, monai, rtol=1e-5, atol=1e-5)


def test_blended_affinities_of_one_window_are_the_window_affinities(image_3d):
    image = torch.from_numpy(image_3d[:, :16, :32, :32])
    network = LabelLookupNetwork(NUM_OBJECTS, noise_scale=0.5)
    blended = blend_windows(image, network, (16, 32, 32), [(0,), (0,), (0,)], offsets=OFFSETS_3D)
    expected = embeddings_to_affinities(network(image[None])[0], OFFSETS_3D)
    for channel, offset in enumerate(OFFSETS_3D):  # edges leaving the window are absent: neutral values
        band = tuple(slice(None, -o) if o < 0 else slice(None) for o in offset)
        expected[channel][band] = 0.0 if channel < 3 else 1.0
    torch.testing.assert_close(blended, expected)


def test_affinities_ignore_per_window_embedding_shifts(image_3d):
    image = torch.from_numpy(image_3d)
    starts = _starts(image.shape[1:], (16, 32, 32), 0.5)
    steady_network = LabelLookupNetwork(NUM_OBJECTS, noise_scale=0.5)
    steady = blend_windows(image, steady_network, (16, 32, 32), starts, offsets=OFFSETS_3D)
    shifted_network = LabelLookupNetwork(NUM_OBJECTS, noise_scale=0.5, shift_scale=20.0)
    shifted = blend_windows(image, shifted_network, (16, 32, 32), starts, offsets=OFFSETS_3D)
    torch.testing.assert_close(shifted, steady, rtol=1e-4, atol=1e-4)


class MirrorSensitiveNetwork(torch.nn.Module):
    """Embeddings that change when the window is mirrored: the image plus a ramp along every axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramps = [torch.linspace(0.0, 3.0, size).view(*(-1 if a == axis else 1 for a in range(x.ndim - 2)))
                 for axis, size in enumerate(x.shape[2:])]
        return torch.cat([x[:, :1] + ramp.expand(x.shape[2:])[None, None].expand(x.shape[0], 1, *x.shape[2:])
                          for ramp in ramps], dim=1)


def test_test_time_flips_average_the_affinities_of_the_mirrored_passes():
    image = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 8, 12, 10)).astype(np.float32))
    network = MirrorSensitiveNetwork()
    roi, offsets = (8, 12, 10), OFFSETS_3D[:6]
    averaged = blend_windows(image, network, roi, [(0,), (0,), (0,)], offsets=offsets, test_time_flips=True)
    passes = []
    for count in range(4):
        for axes in itertools.combinations((2, 3, 4), count):
            embeddings = network(image[None].flip(axes)).flip(axes) if axes else network(image[None])
            passes.append(embeddings_to_affinities(embeddings[0], offsets))
    expected = torch.stack(passes).mean(0)
    for channel, offset in enumerate(offsets):  # edges leaving the window are absent: neutral values
        band = tuple(slice(None, -o) if o < 0 else slice(None) for o in offset)
        expected[channel][band] = 0.0 if channel < 3 else 1.0
    assert len(passes) == 8
    torch.testing.assert_close(averaged, expected)
    single = blend_windows(image, network, roi, [(0,), (0,), (0,)], offsets=offsets)
    assert not torch.allclose(single, averaged)  # the ramps make the passes differ


def test_test_time_flips_change_nothing_for_a_mirror_equivariant_network(image_3d):
    image = torch.from_numpy(image_3d[:, :16, :32, :48])
    network = LabelLookupNetwork(NUM_OBJECTS, noise_scale=0.5)
    starts = _starts(image.shape[1:], (16, 32, 32), 0.5)
    plain = blend_windows(image, network, (16, 32, 32), starts, offsets=OFFSETS_3D)
    flipped = blend_windows(image, network, (16, 32, 32), starts, offsets=OFFSETS_3D, test_time_flips=True)
    torch.testing.assert_close(flipped, plain, rtol=1e-5, atol=1e-5)


def test_test_time_flips_refuse_blended_embeddings(image_3d):
    image = torch.from_numpy(image_3d[:, :16, :32, :32])
    with pytest.raises(ValueError, match="embeddings of mirrored passes cannot be averaged"):
        blend_windows(image, LabelLookupNetwork(NUM_OBJECTS), (16, 32, 32), [(0,), (0,), (0,)],
                      output="embeddings", test_time_flips=True)


def test_region_smaller_than_window_is_padded(image_3d):
    image = torch.from_numpy(image_3d[:, :10, :20, :30])
    network = LabelLookupNetwork(NUM_OBJECTS)
    blended = blend_windows(image, network, (16, 32, 32), [(0,), (0,), (0,)], output="embeddings")
    torch.testing.assert_close(blended, network(image[None])[0])


def test_window_blender_is_a_monai_merger(image_3d):
    image = torch.from_numpy(image_3d[:, :16, :32, :48])
    network = LabelLookupNetwork(NUM_OBJECTS, noise_scale=0.5)
    starts = [(0,), (0,), (0, 16)]
    blender = WindowBlender(image.shape[1:], (16, 32, 32), "affinities", offsets=OFFSETS_3D)
    assert isinstance(blender, Merger)
    for x in starts[2]:
        embeddings = network(image[None, :, :, :, x : x + 32])[0]
        blender.aggregate(embeddings_to_affinities(embeddings, OFFSETS_3D, 2.0), (0, 0, x))
    blended = blender.finalize()
    assert torch.equal(blender.finalize(), blended)  # a second call divides nothing again
    torch.testing.assert_close(blended, blend_windows(image, network, (16, 32, 32), starts, offsets=OFFSETS_3D))


def test_workspace_blends_equal_fresh_blends_and_reuse_one_buffer(image_3d):
    network = LabelLookupNetwork(NUM_OBJECTS, noise_scale=0.5)
    roi = (16, 32, 32)

    def blend(region, workspace=None):
        starts = _starts(region.shape[1:], roi, 0.5)
        return blend_windows(region, network, roi, starts, offsets=OFFSETS_3D, workspace=workspace)

    large, small = torch.from_numpy(image_3d[:, :24, :40, :50]), torch.from_numpy(image_3d[:, :16, :32, :40])
    workspace = BlendingWorkspace()
    first = blend(large, workspace)
    torch.testing.assert_close(first, blend(large), rtol=0, atol=0)
    address = first.data_ptr()
    second = blend(small, workspace)
    # the smaller blend starts on zeros in the same memory, and equals a fresh blend exactly
    assert second.data_ptr() == address
    torch.testing.assert_close(second, blend(small), rtol=0, atol=0)


def test_window_blender_without_windows_raises():
    with pytest.raises(ValueError, match="no window"):
        WindowBlender((4, 4), (4, 4), "embeddings").finalize()
