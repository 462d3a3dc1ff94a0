from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from spoco_monai.transforms import RandCropByLabeledInstances, RandCropByLabeledInstancesd
from spoco_monai.transforms.labeled_crop import _object_ids


def position_image(shape: tuple[int, ...]) -> np.ndarray:
    """(1, *S) float image whose value at each pixel is its flat index, so a crop reveals where it was cut."""
    return np.arange(np.prod(shape), dtype=np.float64).reshape((1, *shape))


def crop_start(patch: torch.Tensor, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(patch.min()), shape))


def crop_of(array: np.ndarray, start: tuple[int, ...], size: tuple[int, ...]) -> np.ndarray:
    return array[(slice(None), *(slice(s, s + r) for s, r in zip(start, size)))]


def corner_label(shape: tuple[int, ...]) -> np.ndarray:
    """(1, *S) label with one small object touching each of two opposite corners (ids 3 and 8)."""
    label = np.zeros((1, *shape), dtype=np.int32)
    label[(0, *(slice(0, 2) for _ in shape))] = 3
    label[(0, *(slice(-2, None) for _ in shape))] = 8
    return label


@pytest.mark.parametrize("shape, size", [((20, 24), (8, 6)), ((10, 12, 14), (4, 6, 5))])
def test_crops_are_aligned_windows_of_the_input(shape: tuple[int, ...], size: tuple[int, ...]) -> None:
    label = corner_label(shape)
    label[(0, *(slice(s // 2 - 1, s // 2 + 1) for s in shape))] = 5
    image = position_image(shape)
    cropper = RandCropByLabeledInstancesd(["image", "label"], "label", size, num_samples=6, pos=0.5)
    cropper.set_random_state(0)
    patches = cropper({"image": image, "label": label, "name": "case"})
    assert len(patches) == 6
    for index, patch in enumerate(patches):
        assert patch["image"].shape == patch["label"].shape == (1, *size)
        start = crop_start(patch["image"], shape)
        assert all(0 <= s <= n - r for s, n, r in zip(start, shape, size))
        np.testing.assert_array_equal(patch["image"].numpy(), crop_of(image, start, size))
        np.testing.assert_array_equal(patch["label"].numpy(), crop_of(label, start, size))
        assert patch["label"].meta["patch_index"] == index
        assert patch["name"] == "case"


def test_array_transform_cuts_the_dictionary_patches() -> None:
    shape, size = (6, 20), (8, 6)  # the label is padded with -1 to 8 rows, the image with 0
    label = corner_label(shape)
    image = position_image(shape) + 1
    cropper = RandCropByLabeledInstances(size, num_samples=4, pos=0.5).set_random_state(3)
    image_patches = cropper(image, label)
    label_patches = cropper(label, randomize=False, pad_value=-1)
    patches = RandCropByLabeledInstancesd(["image", "label"], "label", size, 4, 0.5).set_random_state(3)(
        {"image": image, "label": label}
    )
    for image_patch, label_patch, patch in zip(image_patches, label_patches, patches, strict=True):
        assert torch.equal(image_patch, patch["image"]) and torch.equal(label_patch, patch["label"])
        assert int(image_patch.min()) == 0 and int(label_patch.min()) == -1
    with pytest.raises(ValueError, match="a label is needed"):
        cropper(image)


@pytest.mark.parametrize("shape, size", [((40, 40), (9, 9)), ((16, 20, 20), (5, 7, 6))])
def test_with_pos_one_every_crop_is_centred_on_an_object(shape: tuple[int, ...], size: tuple[int, ...]) -> None:
    label = np.zeros((1, *shape), dtype=np.int32)
    centre = tuple(s // 2 for s in shape)
    label[(0, *(slice(c - 2, c + 2) for c in centre))] = 4
    label[(0, *(slice(c - 2, c) for c in np.asarray(centre) // 2))] = 9  # a small object away from the border
    cropper = RandCropByLabeledInstancesd("label", "label", size, num_samples=20, pos=1.0)
    cropper.set_random_state(1)
    for patch in cropper({"label": label}):
        assert patch["label"][(0, *(r // 2 for r in size))] in (4, 9)


@pytest.mark.parametrize("shape, size", [((30, 30), (8, 8)), ((12, 14, 16), (4, 6, 8))])
def test_objects_in_corners_are_reached(shape: tuple[int, ...], size: tuple[int, ...]) -> None:
    label = corner_label(shape)
    image = position_image(shape)
    cropper = RandCropByLabeledInstancesd(["image", "label"], "label", size, num_samples=30, pos=1.0)
    cropper.set_random_state(2)
    seen = set()
    for patch in cropper({"image": image, "label": label}):
        ids = set(torch.unique(patch["label"]).tolist()) - {0}
        assert len(ids) == 1
        seen |= ids
        start = crop_start(patch["image"], shape)
        expected_start = (0,) * len(shape) if ids == {3} else tuple(n - r for n, r in zip(shape, size))
        assert start == expected_start
    assert seen == {3, 8}


def test_ids_are_never_renumbered() -> None:
    rng = np.random.default_rng(0)
    label = rng.integers(-1, 40, size=(1, 24, 24)).astype(np.int64)
    label[0, :, :3] = 0
    image = position_image((24, 24))
    cropper = RandCropByLabeledInstancesd(["image", "label"], "label", (5, 7), num_samples=40, pos=0.7)
    cropper.set_random_state(3)
    for patch in cropper({"image": image, "label": label}):
        assert set(torch.unique(patch["label"]).tolist()) <= set(np.unique(label).tolist())
        start = crop_start(patch["image"], (24, 24))
        np.testing.assert_array_equal(patch["label"].numpy(), crop_of(label, start, (5, 7)))
        assert patch["label"].dtype == torch.int64


def test_objects_are_chosen_uniformly_not_by_size() -> None:
    label = np.zeros((1, 60, 60), dtype=np.int32)
    label[0, :, :40] = 1  # large object
    label[0, 50, 50] = 2  # one-pixel object
    cropper = RandCropByLabeledInstancesd("label", "label", 3, num_samples=400, pos=1.0)
    cropper.set_random_state(4)
    centres = [int(patch["label"][0, 1, 1]) for patch in cropper({"label": label})]
    assert set(centres) == {1, 2}
    assert 0.4 < centres.count(2) / len(centres) < 0.6


def test_pos_zero_crops_anywhere_and_no_objects_falls_back_to_anywhere() -> None:
    label = np.zeros((1, 50, 50), dtype=np.int32)
    label[0, 20:30, 20:30] = 1
    cropper = RandCropByLabeledInstancesd("label", "label", 5, num_samples=50, pos=0.0)
    cropper.set_random_state(5)
    centres = {int(patch["label"][0, 2, 2]) for patch in cropper({"label": label})}
    assert 0 in centres
    empty = RandCropByLabeledInstancesd("label", "label", 5, num_samples=3, pos=1.0)({"label": np.zeros((1, 9, 9))})
    assert [patch["label"].shape for patch in empty] == [(1, 5, 5)] * 3


def test_seeded_reproducibility() -> None:
    label = np.random.default_rng(6).integers(0, 6, size=(1, 8, 30, 30))
    data = {"label": label, "image": position_image((8, 30, 30))}

    def starts(seed: int) -> list[tuple[int, ...]]:
        cropper = RandCropByLabeledInstancesd(["image", "label"], "label", (4, 8, 8), num_samples=5)
        cropper.set_random_state(seed)
        return [crop_start(patch["image"], (8, 30, 30)) for patch in cropper(data)]

    assert starts(7) == starts(7)
    assert starts(7) != starts(8)


def test_small_image_is_padded_with_ignore_label() -> None:
    label = np.array([[[1, 1, 0], [2, 0, 0]]], dtype=np.int32)
    image = np.ones((1, 2, 3), dtype=np.float32)
    cropper = RandCropByLabeledInstancesd(["image", "label"], "label", (4, 3), num_samples=2)
    for patch in cropper({"image": image, "label": label}):
        expected_label = np.array([[[-1, -1, -1], [1, 1, 0], [2, 0, 0], [-1, -1, -1]]])
        np.testing.assert_array_equal(patch["label"].numpy(), expected_label)
        np.testing.assert_array_equal(patch["image"].numpy(), (expected_label != -1).astype(np.float32))


def test_padding_only_where_needed_then_crop() -> None:
    label = np.zeros((1, 3, 40), dtype=np.int32)
    label[0, 1, 30] = 6
    cropper = RandCropByLabeledInstancesd("label", "label", (5, 8), num_samples=4, pos=1.0)
    cropper.set_random_state(9)
    for patch in cropper({"label": label}):
        assert patch["label"].shape == (1, 5, 8)
        assert torch.all(patch["label"][0, [0, 4]] == -1) and not torch.any(patch["label"][0, 1:4] == -1)
        assert 6 in patch["label"]


def test_meta_tensor_affine_and_label_not_cropped_when_not_a_key() -> None:
    label = MetaTensor(torch.as_tensor(corner_label((10, 10))), meta={"filename_or_obj": "a.tif"})
    image = MetaTensor(torch.as_tensor(position_image((10, 10))), meta={"filename_or_obj": "a.tif"})
    cropper = RandCropByLabeledInstancesd("image", "label", (4, 4), num_samples=3, pos=1.0)
    cropper.set_random_state(10)
    for patch in cropper({"image": image, "label": label}):
        start = crop_start(patch["image"], (10, 10))
        np.testing.assert_allclose(patch["image"].affine[:2, 3].numpy(), start)
        assert patch["image"].meta["filename_or_obj"] == "a.tif"
        assert patch["label"].shape == (1, 10, 10) and patch["label"] is not label


def test_accepts_torch_tensors() -> None:
    label = torch.as_tensor(corner_label((6, 6, 6)))
    patch = RandCropByLabeledInstancesd("label", "label", 3, pos=1.0)({"label": label})[0]
    assert patch["label"].shape == (1, 3, 3, 3) and set(torch.unique(patch["label"]).tolist()) in ({0, 3}, {0, 8})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_input_stays_on_device() -> None:
    label = torch.as_tensor(corner_label((12, 12))).cuda()
    patch = RandCropByLabeledInstancesd("label", "label", (4, 4), pos=1.0)({"label": label})[0]
    assert patch["label"].is_cuda


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"spatial_size": 0}, ValueError, "spatial_size"),
        ({"spatial_size": (4, -1)}, ValueError, "spatial_size"),
        ({"spatial_size": (4.5, 4)}, ValueError, "spatial_size"),
        ({"num_samples": 0}, ValueError, "num_samples"),
        ({"pos": 1.5}, ValueError, r"pos must lie in \[0, 1\]"),
        ({"pos": "high"}, TypeError, "pos"),
    ],
)
def test_invalid_options(options: dict, error: type, message: str) -> None:
    arguments = {"keys": "label", "label_key": "label", "spatial_size": 4, **options}
    with pytest.raises(error, match=message):
        RandCropByLabeledInstancesd(**arguments)


@pytest.mark.parametrize(
    "data, size, error, message",
    [
        ({"label": np.zeros((2, 8, 8))}, 4, ValueError, "must be a"),
        ({"label": np.zeros((8, 8))}, 4, ValueError, "must be a"),
        ({"label": np.zeros((1, 8, 8)), "image": np.zeros((1, 8, 9))}, 4, ValueError, "spatial shape"),
        ({"label": np.zeros((1, 8, 8)), "image": np.zeros((1, 8, 8))}, (4, 4, 4), ValueError, "axes"),
        ({"image": np.zeros((1, 8, 8))}, 4, ValueError, "label_key 'label' is missing"),
        ({"label": np.zeros((1, 2, 8), dtype=np.uint8), "image": np.zeros((1, 2, 8))}, 4, TypeError, "cannot hold"),
    ],
)
def test_invalid_data(data: dict, size: int | tuple[int, ...], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        RandCropByLabeledInstancesd(["image", "label"], "label", size, allow_missing_keys=True)(data)


def test_wide_unsigned_label_keeps_its_ids() -> None:
    label = corner_label((10, 10)).astype(np.uint16)
    label[label == 8] = 60000
    cropper = RandCropByLabeledInstancesd("label", "label", (4, 4), num_samples=4, pos=1.0)
    cropper.set_random_state(11)
    for patch in cropper({"label": label}):
        assert set(torch.unique(patch["label"]).tolist()) in ({0, 3}, {0, 60000})


@pytest.mark.parametrize(
    "ids, dtype",
    [
        ([0, 3, 3, 8, -1, 1], torch.int64),  # small ids: counted
        ([0, 3, 3, 8, 1], torch.uint8),
        ([0, 3, 1000, 1000, 7], torch.int64),  # an id above the pixel count: sorted
        ([0.0, 2.0, 5.0, 2.0], torch.float32),
        ([0, -1, 0], torch.int64),  # no object
    ],
)
def test_object_ids_are_those_of_unique(ids, dtype):
    flat = torch.tensor(ids, dtype=dtype)
    expected = torch.unique(flat[flat > 0])
    found = _object_ids(flat)
    assert found.tolist() == expected.tolist()


def test_patches_do_not_depend_on_how_ids_are_found():
    # the same object ids, once small (counted) and once shifted above the pixel count (sorted): same draws
    label = corner_label((12, 12)).astype(np.int64)
    shifted = np.where(label > 0, label + 10_000, label)
    image = position_image((12, 12))
    starts = []
    for values in (label, shifted):
        cropper = RandCropByLabeledInstances(spatial_size=4, num_samples=6, pos=0.8)
        cropper.set_random_state(5)
        patches = cropper(image, label=values)
        starts.append([crop_start(p, (12, 12)) for p in patches])
    assert starts[0] == starts[1]
