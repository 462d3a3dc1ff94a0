from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from spoco_monai.transforms import TwoViewIntensityAugment, TwoViewIntensityAugmentd


def square_image(shape: tuple[int, ...]) -> MetaTensor:
    """(1, *S) image: a bright cube of value 1 centred in a background of 0."""
    image = torch.zeros((1, *shape))
    image[(0, *(slice(s // 4, s - s // 4) for s in shape))] = 1.0
    return MetaTensor(image, meta={"filename_or_obj": "img.tif"})


def centre_of_mass(image: torch.Tensor) -> torch.Tensor:
    weights = image[0].clamp_min(0)
    grids = torch.meshgrid(*(torch.arange(s, dtype=torch.float32) for s in weights.shape), indexing="ij")
    return torch.stack([(g * weights).sum() / weights.sum() for g in grids])


@pytest.mark.parametrize("shape", [(24, 24), (12, 16, 16)])
def test_views_share_geometry_and_differ_in_intensity(shape: tuple[int, ...]) -> None:
    image = square_image(shape)
    label = torch.ones((1, *shape), dtype=torch.int32)
    augment = TwoViewIntensityAugmentd(noise_std=0.05, prob=1.0)
    augment.set_random_state(0)
    out = augment({"image": image, "label": label})
    first, second = out["image"], out["image_view2"]
    assert first.shape == second.shape == image.shape
    assert not torch.allclose(first, second) and not torch.allclose(first, image)
    np.testing.assert_allclose(centre_of_mass(first), centre_of_mass(image), atol=0.25)
    np.testing.assert_allclose(centre_of_mass(second), centre_of_mass(image), atol=0.25)
    assert out["label"] is label
    assert second.meta["filename_or_obj"] == "img.tif"


def test_input_is_not_modified_and_views_never_share_memory() -> None:
    image = square_image((8, 8))
    original = image.clone()
    out = TwoViewIntensityAugmentd(prob=0.0)({"image": image})
    assert torch.equal(out["image"], original) and torch.equal(out["image_view2"], original)
    out["image_view2"] += 1
    assert torch.equal(out["image"], original) and torch.equal(image, original)


def test_deterministic_with_set_random_state() -> None:
    image = square_image((16, 16))

    def views(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        augment = TwoViewIntensityAugmentd(prob=1.0).set_random_state(seed)
        out = augment({"image": image})
        return out["image"], out["image_view2"]

    first, second = views(3)
    again = views(3)
    assert torch.equal(first, again[0]) and torch.equal(second, again[1])
    assert not torch.equal(first, views(4)[0])


def test_array_transform_gives_the_dictionary_views() -> None:
    image = square_image((16, 16))
    first, second = Compose([TwoViewIntensityAugment(prob=1.0)]).set_random_state(2)(image)
    out = Compose([TwoViewIntensityAugmentd(prob=1.0)]).set_random_state(2)({"image": image})
    assert torch.equal(first, out["image"]) and torch.equal(second, out["image_view2"])
    assert not torch.equal(first, second)


def test_seed_propagates_through_compose() -> None:
    image = square_image((16, 16))
    outputs = [
        Compose([TwoViewIntensityAugmentd(prob=1.0)]).set_random_state(5)({"image": image})["image_view2"]
        for _ in range(2)
    ]
    assert torch.equal(outputs[0], outputs[1])


def test_several_keys_custom_suffix_and_numpy_input() -> None:
    data = {"raw": np.random.default_rng(0).random((1, 6, 6)).astype(np.float32), "mask": np.ones((1, 6, 6))}
    out = TwoViewIntensityAugmentd(["raw", "mask"], view_suffix="_b", prob=1.0).set_random_state(1)(data)
    assert set(out) == {"raw", "mask", "raw_b", "mask_b"}
    assert all(isinstance(out[key], torch.Tensor) and out[key].shape == (1, 6, 6) for key in out)


def test_each_view_applies_each_augmentation_with_probability_prob() -> None:
    image = square_image((8, 8))
    augment = TwoViewIntensityAugmentd(prob=0.5).set_random_state(6)
    unchanged = [torch.equal(augment({"image": image})["image"], image) for _ in range(40)]
    assert 1 <= sum(unchanged) <= 12  # all three skipped with probability 0.5 ** 3, 5 expected


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"prob": 1.5}, ValueError, r"prob must lie in \[0, 1\]"),
        ({"prob": None}, TypeError, "prob"),
        ({"noise_std": -0.1}, ValueError, "noise_std must be >= 0"),
        ({"blur_sigma": (1.0, 0.5)}, ValueError, "blur_sigma must satisfy"),
        ({"blur_sigma": 1.0}, ValueError, "blur_sigma must be a"),
        ({"contrast_gamma": (0.0, 1.0)}, ValueError, "contrast_gamma must satisfy"),
        ({"contrast_gamma": ("a", 1.0)}, TypeError, "contrast_gamma"),
        ({"view_suffix": ""}, ValueError, "view_suffix"),
        ({"keys": 3}, TypeError, "keys must be strings"),
    ],
)
def test_invalid_options(options: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        TwoViewIntensityAugmentd(**options)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_input_stays_on_device() -> None:
    out = TwoViewIntensityAugmentd(prob=1.0)({"image": square_image((8, 8, 8)).cuda()})
    assert out["image"].is_cuda and out["image_view2"].is_cuda
