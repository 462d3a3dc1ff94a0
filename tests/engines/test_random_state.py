from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from monai.transforms import Compose, RandAxisFlipd, RandGaussianNoised
from torch import nn

from spoco_monai.engines.random_state import capture_random_state, find_generators, restore_random_state


class _Sampler(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Module()
        self.inner.generator = torch.Generator().manual_seed(3)


def _draw(transforms: Compose, module: _Sampler) -> list[float]:
    flip, noise = transforms.transforms
    return [
        float(torch.rand(1)), float(np.random.rand()), random.random(), float(flip.R.rand()), float(noise.R.rand()),
        float(torch.rand(1, generator=module.inner.generator)),
    ]


def test_restored_state_draws_the_same_numbers_after_a_weights_only_round_trip(tmp_path):
    transforms = Compose([RandAxisFlipd("image", prob=0.5), RandGaussianNoised("image", prob=0.5)]).set_random_state(1)
    module = _Sampler()
    generators = find_generators(transforms, module)
    # the dictionary transforms and the array transforms inside them, then the module's generator
    assert all(isinstance(g, np.random.RandomState) for g in generators[:-1]) and len(generators) >= 3
    assert generators[-1] is module.inner.generator
    _draw(transforms, module)
    torch.save(capture_random_state(generators), tmp_path / "state.pt")
    expected = _draw(transforms, module)
    _draw(transforms, module)
    restore_random_state(torch.load(tmp_path / "state.pt", weights_only=True), generators)
    assert _draw(transforms, module) == expected


def test_state_of_another_configuration_is_refused():
    transforms = Compose([RandAxisFlipd("image", prob=0.5)])
    state = capture_random_state(find_generators(transforms))
    with pytest.raises(ValueError, match="generators but this configuration has 0"):
        restore_random_state(state, [])


def test_generators_inside_wrapped_array_transforms_are_found_and_restored():
    from spoco_monai.transforms import RandCropByLabeledInstancesd, TwoViewIntensityAugmentd

    crop = RandCropByLabeledInstancesd(keys=["image", "label"], label_key="label", spatial_size=(8, 8), num_samples=2)
    views = TwoViewIntensityAugmentd(keys="image")
    pipeline = Compose([crop, views]).set_random_state(3)
    generators = find_generators(pipeline)
    # the array transforms the dictionary versions wrap draw from generators of their own
    inner = [crop.cropper.R, views.augment.R, *(t.R for view in views.augment.views for t in view.transforms)]
    assert all(any(g is generator for generator in generators) for g in inner)
    label = torch.zeros(1, 32, 32, dtype=torch.int64)
    label[0, 4:12, 4:12], label[0, 20:28, 20:28] = 1, 2
    data = {"image": torch.rand(1, 32, 32), "label": label}
    state = capture_random_state(generators)
    first = pipeline(dict(data))
    restore_random_state(state, generators)
    second = pipeline(dict(data))
    for a, b in zip(first, second):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["image_view2"], b["image_view2"])
