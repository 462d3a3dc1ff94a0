"""Random fixed-size patches centred on labeled objects, for sparse annotations where most patches hold none."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from copy import deepcopy
from numbers import Integral
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable, SpatialCrop, SpatialPad, Transform
from monai.transforms.traits import MultiSampleTrait
from monai.utils import ImageMetaKey

from spoco_monai.transforms.label_tensor import label_tensor
from spoco_monai.validation import check_unit_interval

__all__ = ["RandCropByLabeledInstances", "RandCropByLabeledInstancesd", "IGNORE_LABEL"]

IGNORE_LABEL = -1


def _object_ids(flat: torch.Tensor) -> torch.Tensor:
    """The sorted ids > 0 of a flat instance label, as ``torch.unique`` gives them.

    ``torch.unique`` sorts every labeled pixel; counting the ids is one pass, so integer labels whose largest id is at
    most their number of pixels (any instance label with consecutive ids) are counted instead.
    """
    positive = flat[flat > 0]
    if positive.is_floating_point() or positive.dtype == torch.bool or not positive.numel():
        return torch.unique(positive)
    if int(positive.max()) > flat.numel():
        return torch.unique(positive)
    return torch.bincount(positive.to(torch.int64)).nonzero().squeeze(1).to(flat.dtype)


class RandCropByLabeledInstances(Randomizable, Transform, MultiSampleTrait):
    """Crop ``num_samples`` patches of ``spatial_size``, each around a labeled object with probability ``pos``.

    For each patch, with probability ``pos`` a labeled object (id > 0 in the instance label) is chosen
    uniformly among the objects present, then one of its pixels uniformly; otherwise a pixel is chosen
    uniformly over the whole image. The patch is centred on that pixel (index ``spatial_size // 2`` of the
    patch) and shifted, where the image border requires it, so that it lies inside the image: the chosen
    pixel is always inside the patch, and every patch has exactly ``spatial_size``. With ``pos > 0`` and no
    labeled object in the image, the pixel is chosen anywhere.

    Images smaller than ``spatial_size`` along an axis are first padded symmetrically (MONAI ``SpatialPad``)
    to that size with ``pad_value``: -1 (ignore) for the label itself, so the padding takes no part in any
    loss, 0 for images. Patches are cut with MONAI ``SpatialCrop``, so MetaTensors get a consistent affine
    and ``applied_operations``; ``meta["patch_index"]`` numbers the patches. Ids are copied as they are:
    cropping never renumbers an object into 0 or -1 and never relabels.

    Like MONAI ``RandCropByPosNegLabel``, a call with a label draws the patches and returns them as a list;
    a call with ``randomize=False`` cuts the same patches from another array of the label's spatial shape,
    e.g. ``patches = crop(image, label)`` then ``label_patches = crop(label, randomize=False, pad_value=-1)``.
    Inputs are channel-first (C, *S) numpy arrays, tensors or MetaTensors, 2D or 3D; the label has one
    channel. Crops come back as MetaTensors (tensors without meta data when MONAI meta tracking is off), on
    the input's device. Objects and pixels are drawn from ``self.R``; seed it with ``set_random_state``.

    Args:
        spatial_size: patch size, one positive int for every axis or one per spatial axis.
        num_samples: number of patches per input.
        pos: probability of centring a patch on a labeled object, in [0, 1].

    Raises:
        TypeError: if an option has the wrong type, or a label that needs -1 padding cannot hold -1.
        ValueError: if an option is out of range, the label is not (1, H, W) or (1, D, H, W),
            ``spatial_size`` has the wrong length, or an array's spatial shape differs from the label's.
    """

    backend = SpatialCrop.backend

    def __init__(self, spatial_size: Sequence[int] | int, num_samples: int = 1, pos: float = 0.9) -> None:
        sizes = (spatial_size,) if isinstance(spatial_size, Integral) else tuple(spatial_size)
        if not sizes or not all(isinstance(s, Integral) and not isinstance(s, bool) and s > 0 for s in sizes):
            raise ValueError(f"spatial_size must be a positive int or a sequence of them, found {spatial_size!r}.")
        if isinstance(num_samples, bool) or not isinstance(num_samples, Integral) or num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, found {num_samples!r}.")
        self.spatial_size = spatial_size if isinstance(spatial_size, Integral) else tuple(int(s) for s in sizes)
        self.num_samples = int(num_samples)
        self.pos = check_unit_interval("pos", pos)
        self._spatial_shape: tuple[int, ...] = ()
        self._starts: list[tuple[int, ...]] = []

    def roi_size(self, spatial_dims: int) -> tuple[int, ...]:
        """The patch size for images with ``spatial_dims`` axes.

        Raises:
            ValueError: if ``spatial_size`` was given for another number of axes.
        """
        if isinstance(self.spatial_size, Integral):
            return (int(self.spatial_size),) * spatial_dims
        if len(self.spatial_size) != spatial_dims:
            raise ValueError(
                f"spatial_size {self.spatial_size} has {len(self.spatial_size)} axes, "
                f"the label has {spatial_dims} spatial axes."
            )
        return self.spatial_size

    def randomize(self, label: NdarrayOrTensor) -> None:
        """Draw the start corner of every patch in the (padded) instance ``label`` (1, *S)."""
        if len(label.shape) not in (3, 4) or label.shape[0] != 1:
            raise ValueError(
                f"the label must be a (1, H, W) or (1, D, H, W) instance label, found shape {tuple(label.shape)}."
            )
        self._spatial_shape = tuple(label.shape[1:])
        values = label_tensor(self._pad(label, IGNORE_LABEL))
        shape = np.asarray(values.shape[1:])
        size = np.asarray(self.roi_size(len(shape)))
        flat = values.reshape(-1)
        objects = _object_ids(flat)
        starts = []
        for _ in range(self.num_samples):
            # The coin is tossed even without objects so that the random stream does not depend on the label.
            on_object = self.R.rand() < self.pos
            if on_object and objects.numel():
                chosen = objects[self.R.randint(objects.numel())]
                pixels = torch.nonzero(flat == chosen).squeeze(1)
                index = int(pixels[self.R.randint(pixels.numel())])
            else:
                index = int(self.R.randint(flat.numel()))
            centre = np.asarray(np.unravel_index(index, tuple(shape)))
            start = np.clip(centre - size // 2, 0, shape - size)
            starts.append(tuple(int(s) for s in start))
        self._starts = starts

    def __call__(
        self,
        img: NdarrayOrTensor,
        label: NdarrayOrTensor | None = None,
        randomize: bool = True,
        pad_value: int = 0,
    ) -> list[NdarrayOrTensor]:
        """The ``num_samples`` patches of ``img`` (C, *S).

        Args:
            img: the array to crop.
            label: the (1, *S) instance label that places the patches; needed when ``randomize`` is True.
            randomize: draw new patches from ``label``; False cuts the patches of the previous call.
            pad_value: value of the padding of an ``img`` smaller than ``spatial_size`` (-1 for a label).

        Raises:
            ValueError: if ``label`` is missing where patches are drawn, or ``img`` has another spatial shape.
        """
        if randomize:
            if label is None:
                raise ValueError("a label is needed to draw the patches (randomize=True).")
            self.randomize(label)
        if tuple(img.shape[1:]) != self._spatial_shape:
            raise ValueError(
                f"the array has spatial shape {tuple(img.shape[1:])}, expected that of the label: {self._spatial_shape}."
            )
        array = self._pad(img, pad_value)
        size = self.roi_size(len(self._spatial_shape))
        patches = []
        for index, start in enumerate(self._starts):
            patch = SpatialCrop(roi_start=start, roi_end=tuple(s + r for s, r in zip(start, size)))(array)
            if isinstance(patch, MetaTensor):
                patch.meta[ImageMetaKey.PATCH_INDEX] = index
            patches.append(patch)
        return patches

    def _pad(self, array: NdarrayOrTensor, value: int) -> NdarrayOrTensor:
        """Pad ``array`` (C, *S) symmetrically with ``value`` to at least ``spatial_size``; unchanged if already."""
        size = self.roi_size(len(self._spatial_shape))
        padded_shape = tuple(max(s, r) for s, r in zip(self._spatial_shape, size))
        if tuple(array.shape[1:]) == padded_shape:
            return array
        signed = array.dtype.kind in "if" if isinstance(array, np.ndarray) else array.dtype.is_signed
        if value < 0 and not signed:
            raise TypeError(
                f"the label must be padded with {value} (ignore) but its dtype {array.dtype} cannot hold it; "
                "cast it to a signed integer or float type first (e.g. CastToTyped)."
            )
        return SpatialPad(spatial_size=padded_shape, value=value)(array)


class RandCropByLabeledInstancesd(Randomizable, MapTransform, MultiSampleTrait):
    """Dictionary version of :class:`RandCropByLabeledInstances`: the same patches of every key in ``keys``.

    ``data[label_key]`` places the patches (and is padded with -1 where it is cropped); the other keys are
    padded with 0. Like MONAI ``RandCropByPosNegLabeld`` it returns a list of ``num_samples`` dictionaries;
    entries not in ``keys`` are deep-copied into each. All arrays have the spatial shape of
    ``data[label_key]``. ``set_random_state`` seeds the wrapped :class:`RandCropByLabeledInstances`.

    Args:
        keys: keys of the arrays to crop (usually the image and the label).
        label_key: key of the (1, *S) instance label used to place the patches (cropped only if in ``keys``).
        spatial_size: patch size, one positive int for every axis or one per spatial axis.
        num_samples: number of patches per input.
        pos: probability of centring a patch on a labeled object, in [0, 1].
        allow_missing_keys: don't raise if a key in ``keys`` is missing.

    Raises:
        TypeError, ValueError: as :class:`RandCropByLabeledInstances`; ValueError also when ``label_key`` is
            missing from the data or a key's spatial shape differs from the label's.
    """

    backend = RandCropByLabeledInstances.backend

    def __init__(
        self,
        keys: KeysCollection,
        label_key: Hashable,
        spatial_size: Sequence[int] | int,
        num_samples: int = 1,
        pos: float = 0.9,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.label_key = label_key
        self.cropper = RandCropByLabeledInstances(spatial_size, num_samples, pos)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandCropByLabeledInstancesd:
        super().set_random_state(seed, state)
        self.cropper.set_random_state(seed, state)
        return self

    def randomize(self, label: NdarrayOrTensor) -> None:
        """Draw the patches from the instance ``label`` (1, *S)."""
        self.cropper.randomize(label)

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        d = dict(data)
        if self.label_key not in d:
            raise ValueError(f"label_key {self.label_key!r} is missing from the data, found keys {list(d)}.")
        spatial_shape = tuple(d[self.label_key].shape[1:])
        for key in self.key_iterator(d):
            if tuple(d[key].shape[1:]) != spatial_shape:
                raise ValueError(
                    f"data[{key!r}] has spatial shape {tuple(d[key].shape[1:])}, "
                    f"expected that of data[{self.label_key!r}]: {spatial_shape}."
                )
        self.randomize(d[self.label_key])
        samples: list[dict[Hashable, Any]] = [dict(d) for _ in range(self.cropper.num_samples)]
        for sample in samples:
            for key in set(d).difference(self.keys):
                sample[key] = deepcopy(d[key])
        for key in self.key_iterator(d):
            pad_value = IGNORE_LABEL if key == self.label_key else 0
            for sample, patch in zip(samples, self.cropper(d[key], randomize=False, pad_value=pad_value)):
                sample[key] = patch
        return samples
