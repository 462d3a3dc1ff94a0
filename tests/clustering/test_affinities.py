from __future__ import annotations

import numpy as np
import pytest
import torch

from spoco_monai.clustering import default_offsets, embeddings_to_affinities


def test_default_offsets_2d_and_3d():
    assert default_offsets(2) == [(-1, 0), (0, -1), (-3, 0), (0, -3), (-9, 0), (0, -9), (-27, 0), (0, -27)]
    offsets_3d = default_offsets(3)
    assert offsets_3d[:3] == [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]
    assert offsets_3d[3:6] == [(-3, 0, 0), (0, -3, 0), (0, 0, -3)]
    assert len(offsets_3d) == 12


@pytest.mark.parametrize("spatial_dims", [1, 4])
def test_default_offsets_invalid(spatial_dims):
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        default_offsets(spatial_dims)


# one embedding channel; delta_d = 2, so a = (1 - d / 4)^2: d = 0 -> 1, d = 2 -> 0.25, d >= 4 -> 0
TINY = np.array([[[0.0, 0.0, 4.0], [0.0, 2.0, 4.0]]], dtype=np.float32)
TINY_OFFSETS = [(-1, 0), (0, -1), (0, 1)]
TINY_EXPECTED = np.array(
    [
        [[0, 0, 0], [1, 0.25, 1]],
        [[0, 1, 0], [0, 0.25, 0.25]],
        [[1, 0, 0], [0.25, 0.25, 0]],
    ],
    dtype=np.float32,
)


def test_affinities_by_hand_numpy():
    affinities = embeddings_to_affinities(TINY, TINY_OFFSETS, affinity_delta_dist=2.0)
    assert isinstance(affinities, np.ndarray) and affinities.dtype == np.float32
    np.testing.assert_allclose(affinities, TINY_EXPECTED, atol=1e-6)


def test_affinities_by_hand_torch():
    affinities = embeddings_to_affinities(torch.from_numpy(TINY).double(), TINY_OFFSETS, affinity_delta_dist=2.0)
    assert isinstance(affinities, torch.Tensor) and affinities.dtype == torch.float32
    np.testing.assert_allclose(affinities.numpy(), TINY_EXPECTED, atol=1e-6)


def test_affinities_use_the_euclidean_norm_and_delta():
    # vectors (0, 0) and (0.6, 0.8): distance 1; with delta_d = 1, a = (1 - 1/2)^2
    embeddings = np.zeros((2, 1, 2), dtype=np.float32)
    embeddings[:, 0, 1] = [0.6, 0.8]
    affinities = embeddings_to_affinities(embeddings, [(0, -1)], affinity_delta_dist=1.0)
    np.testing.assert_allclose(affinities[0, 0], [0.0, 0.25], atol=1e-6)


def test_offsets_longer_than_the_array_give_zero():
    affinities = embeddings_to_affinities(np.zeros((3, 4, 5), np.float32), [(-27, 0), (0, 27)])
    assert affinities.shape == (2, 4, 5) and not affinities.any()


@pytest.mark.parametrize("shape", [(4, 9, 11), (3, 5, 6, 7)])
def test_torch_and_numpy_paths_agree(shape):
    embeddings = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    offsets = default_offsets(len(shape) - 1) + [tuple([2] * (len(shape) - 1))]
    from_numpy = embeddings_to_affinities(embeddings, offsets, affinity_delta_dist=1.5)
    from_torch = embeddings_to_affinities(torch.from_numpy(embeddings), offsets, affinity_delta_dist=1.5)
    np.testing.assert_allclose(from_torch.numpy(), from_numpy, atol=1e-5)
    assert from_numpy.min() >= 0 and from_numpy.max() <= 1


def test_same_object_gives_one_and_far_objects_zero(clean_embeddings):
    embeddings, labels = clean_embeddings
    offsets = default_offsets(labels.ndim)[: labels.ndim]
    affinities = embeddings_to_affinities(embeddings, offsets)
    for channel, offset in enumerate(offsets):
        axis = offset.index(-1)
        inside = [slice(None)] * labels.ndim
        before = [slice(None)] * labels.ndim
        inside[axis], before[axis] = slice(1, None), slice(None, -1)
        same = labels[tuple(inside)] == labels[tuple(before)]
        values = affinities[channel][tuple(inside)]
        assert values[same].min() > 0.85
        assert values[~same].max() < 0.1


@pytest.mark.parametrize(
    "embeddings, offsets, affinity_delta_dist, error, match",
    [
        (np.zeros((2, 3), np.float32), [(-1,)], 2.0, ValueError, "got 2 dimensions"),
        (np.zeros((2, 3, 3, 3, 3), np.float32), [(-1, 0, 0, 0)], 2.0, ValueError, "got 5 dimensions"),
        (np.zeros((2, 3, 3), np.int64), [(-1, 0)], 2.0, TypeError, "floating point"),
        ([[[0.0]]], [(-1, 0)], 2.0, TypeError, "numpy array or a torch tensor"),
        (np.zeros((2, 3, 3), np.float32), [(-1, 0, 0)], 2.0, ValueError, "2 integers"),
        (np.zeros((2, 3, 3), np.float32), [(0, 0)], 2.0, ValueError, "non-zero"),
        (np.zeros((2, 3, 3), np.float32), [], 2.0, ValueError, "must not be empty"),
        (np.zeros((2, 3, 3), np.float32), [(-1, 0)], -1.0, ValueError, "affinity_delta_dist must be > 0"),
        (np.zeros((2, 3, 3), np.float32), [(-1, 0)], 0.0, ValueError, "affinity_delta_dist must be > 0"),
    ],
)
def test_invalid_input(embeddings, offsets, affinity_delta_dist, error, match):
    with pytest.raises(error, match=match):
        embeddings_to_affinities(embeddings, offsets, affinity_delta_dist)


def test_default_offsets_follow_the_object_size():
    # powers of 3 up to half the diameter, at least 3
    assert default_offsets(2, object_diameter=20) == [(-1, 0), (0, -1), (-3, 0), (0, -3), (-9, 0), (0, -9)]
    assert default_offsets(2, object_diameter=4) == [(-1, 0), (0, -1), (-3, 0), (0, -3)]
    assert default_offsets(2, object_diameter=54) == default_offsets(2)


def test_default_offsets_shorten_steps_along_coarse_axes():
    offsets = default_offsets(3, object_diameter=20, element_size=(1.0, 0.25, 0.25))
    # z voxels are 4x coarser: the step 3 becomes 1 (already an attractive offset, so dropped), 9 becomes 2
    assert offsets == [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, -3, 0), (0, 0, -3), (-2, 0, 0), (0, -9, 0), (0, 0, -9)]


@pytest.mark.parametrize(
    "diameter, element_size, match",
    [(0, None, "object_diameter"), (10, (1.0, 0.0), "element_size"), (10, (1.0,), "element_size")],
)
def test_default_offsets_invalid_scale(diameter, element_size, match):
    with pytest.raises(ValueError, match=match):
        default_offsets(2, object_diameter=diameter, element_size=element_size)
