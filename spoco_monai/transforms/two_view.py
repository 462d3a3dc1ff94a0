"""Two intensity-augmented views of one patch: the inputs of the SPOCO embedding-consistency term."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from copy import deepcopy
from numbers import Real
from typing import Any

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import (
    Compose,
    MapTransform,
    RandAdjustContrast,
    Randomizable,
    RandGaussianNoise,
    RandGaussianSmooth,
    Transform,
)
from monai.utils import MAX_SEED

from spoco_monai.validation import check_non_negative, check_unit_interval

__all__ = ["TwoViewIntensityAugment", "TwoViewIntensityAugmentd"]


def _check_range(name: str, value: Sequence[float]) -> tuple[float, float]:
    """Validate a ``(low, high)`` pair with ``0 < low <= high``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{name} must be a (low, high) pair, found {value!r}.")
    low, high = value
    if not all(isinstance(v, Real) and not isinstance(v, bool) for v in (low, high)):
        raise TypeError(f"{name} must hold two real numbers, found {value!r}.")
    if not 0 < low <= high:
        raise ValueError(f"{name} must satisfy 0 < low <= high, found {value!r}.")
    return float(low), float(high)


class TwoViewIntensityAugment(Randomizable, Transform):
    """Make two views of an image with the same geometry and independent intensity augmentation.

    Each view passes through its own chain of MONAI array transforms, each applied with probability ``prob``
    and with random strength:

    1. ``RandAdjustContrast``: gamma correction with gamma drawn from ``contrast_gamma`` (contrast jitter);
    2. ``RandGaussianSmooth``: Gaussian blur with a sigma per axis drawn from ``blur_sigma`` (pixels);
    3. ``RandGaussianNoise``: additive zero-mean noise whose standard deviation is drawn from [0, ``noise_std``].

    Noise comes last so that the blur does not remove it. Nothing spatial is applied, so a pixel of one
    view corresponds to the same pixel of the other, as the consistency term requires (Wolny et al.,
    CVPR 2022). The defaults suit images normalised to zero mean and unit variance or to [0, 1].

    The two chains have their own random states, so the views differ; ``set_random_state`` seeds both
    from this transform's generator, so a seed fixes both views. Images are channel-first (C, *S),
    2D or 3D, numpy, tensor or MetaTensor (returned as float32 tensors/MetaTensors on the input device;
    meta data is kept).

    Args:
        noise_std: largest standard deviation of the additive Gaussian noise, >= 0.
        blur_sigma: (low, high) range of the blur sigma, 0 < low <= high.
        contrast_gamma: (low, high) range of the gamma exponent, 0 < low <= high.
        prob: probability of applying each of the three augmentations to each view, in [0, 1].

    Raises:
        TypeError: if an option has the wrong type.
        ValueError: if an option is out of range.
    """

    backend = RandGaussianSmooth.backend  # the narrowest of the three: torch only

    def __init__(
        self,
        noise_std: float = 0.1,
        blur_sigma: Sequence[float] = (0.25, 1.0),
        contrast_gamma: Sequence[float] = (0.7, 1.5),
        prob: float = 0.5,
    ) -> None:
        self.noise_std = check_non_negative("noise_std", noise_std)
        self.blur_sigma = _check_range("blur_sigma", blur_sigma)
        self.contrast_gamma = _check_range("contrast_gamma", contrast_gamma)
        self.prob = check_unit_interval("prob", prob)
        self.views = (self._augmentation(), self._augmentation())

    def _augmentation(self) -> Compose:
        """The intensity augmentation of one view, with a random state of its own."""
        return Compose(
            [
                RandAdjustContrast(prob=self.prob, gamma=self.contrast_gamma),
                RandGaussianSmooth(
                    sigma_x=self.blur_sigma, sigma_y=self.blur_sigma, sigma_z=self.blur_sigma, prob=self.prob
                ),
                RandGaussianNoise(prob=self.prob, mean=0.0, std=self.noise_std),
            ]
        )

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> TwoViewIntensityAugment:
        super().set_random_state(seed, state)
        for view in self.views:
            view.set_random_state(seed=int(self.R.randint(MAX_SEED, dtype="uint32")))
        return self

    def __call__(self, img: NdarrayOrTensor) -> tuple[NdarrayOrTensor, NdarrayOrTensor]:
        """``(view 1, view 2)`` of ``img`` (C, *S)."""
        first, second = self.views
        # A copy, so that the views never share memory, even when no augmentation fires on either.
        second_view = second(deepcopy(img))
        return first(img), second_view


class TwoViewIntensityAugmentd(MapTransform, Randomizable):
    """Dictionary version of :class:`TwoViewIntensityAugment`.

    View 1 replaces ``data[key]``, view 2 is stored in ``data[key + view_suffix]`` (``"image_view2"`` by
    default). Other keys, such as the label, are untouched. ``set_random_state`` seeds the wrapped
    :class:`TwoViewIntensityAugment`, so a seed fixes both views of every key.

    Args:
        keys: keys of the images to augment.
        view_suffix: appended to each key to name the second view.
        noise_std: largest standard deviation of the additive Gaussian noise, >= 0.
        blur_sigma: (low, high) range of the blur sigma, 0 < low <= high.
        contrast_gamma: (low, high) range of the gamma exponent, 0 < low <= high.
        prob: probability of applying each of the three augmentations to each view, in [0, 1].
        allow_missing_keys: don't raise if a key in ``keys`` is missing.

    Raises:
        TypeError: if a key is not a string or an option has the wrong type.
        ValueError: if an option is out of range or ``view_suffix`` is empty.
    """

    backend = TwoViewIntensityAugment.backend

    def __init__(
        self,
        keys: KeysCollection = "image",
        view_suffix: str = "_view2",
        noise_std: float = 0.1,
        blur_sigma: Sequence[float] = (0.25, 1.0),
        contrast_gamma: Sequence[float] = (0.7, 1.5),
        prob: float = 0.5,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if not all(isinstance(key, str) for key in self.keys):
            raise TypeError(f"keys must be strings (the view key is key + view_suffix), found {self.keys!r}.")
        if not isinstance(view_suffix, str) or not view_suffix:
            raise ValueError(f"view_suffix must be a non-empty string, found {view_suffix!r}.")
        self.view_suffix = view_suffix
        self.augment = TwoViewIntensityAugment(noise_std, blur_sigma, contrast_gamma, prob)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> TwoViewIntensityAugmentd:
        super().set_random_state(seed, state)
        self.augment.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key], d[f"{key}{self.view_suffix}"] = self.augment(d[key])
        return d
