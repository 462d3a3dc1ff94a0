"""Random fixed-size patches centred on labeled objects, for sparse annotations where most patches hold none."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from copy import deepcopy
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable, SpatialCrop, SpatialPad
from monai.transforms.traits import MultiSampleTrait
from monai.utils import ImageMetaKey

from spoco_monai.transforms.label_tensor import label_tensor

__all__ = ["RandCropByLabeledInstancesd", "IGNORE_LABEL"]

IGNORE_LABEL = -1


class RandCropByLabeledInstancesd(Randomizable, MapTransform, MultiSampleTrait):
    """Crop ``num_samples`` patches of ``spatial_size``, each around a labeled object with probability ``pos``.

    For each patch, with probability ``pos`` a labeled object (id > 0 in ``data[label_key]``) is chosen
    uniformly among the objects present, then one of its pixels uniformly; otherwise a pixel is chosen
    uniformly over the whole image. The patch is centred on that pixel (index ``spatial_size // 2`` of the
    patch) and shifted, where the image border requires it, so that it lies inside the image: the chosen
    pixel is always inside the patch, and every patch has exactly ``spatial_size``. With ``pos > 0`` and no
    labeled object in the image, the pixel is chosen anywhere.

    Images smaller than ``spatial_size`` along an axis are first padded symmetrically (MONAI
    ``SpatialPad``) to that size: ``label_key`` with -1 (ignore, so the padding takes no part in any loss),
    the other keys with 0. Patches are cut with MONAI ``SpatialCrop``, so MetaTensors get a consistent affine
    and ``applied_operations``; ``meta["patch_index"]`` numbers the patches. Ids are copied as they are:
    cropping never renumbers an object into 0 or -1 and never relabels.

    Like MONAI ``RandCropByPosNegLabeld`` it returns a list of ``num_samples`` dictionaries; entries not in
    ``keys`` are deep-copied into each. Inputs are channel-first (C, *S) numpy arrays, tensors or
    MetaTensors, 2D or 3D, all with the spatial shape of ``data[label_key]``, which must have one channel;
    crops come back as MetaTensors (tensors without meta data when MONAI meta tracking is off), on the
    input's device. Objects and pixels are drawn from ``self.R``; seed it with ``set_random_state``.

    Args:
        keys: keys of the arrays to crop (usually the image and the label).
        label_key: key of the (1, *S) instance label used to place the patches (cropped only if in ``keys``).
        spatial_size: patch size, one positive int for every axis or one per spatial axis.
        num_samples: number of patches per input.
        pos: probability of centring a patch on a labeled object, in [0, 1].
        allow_missing_keys: don't raise if a key in ``keys`` is missing.

    Raises:
        TypeError: if an option has the wrong type, or a label that needs -1 padding cannot hold -1.
        ValueError: if an option is out of range, the label is not (1, H, W) or (1, D, H, W),
            ``spatial_size`` has the wrong length, or a key's spatial shape differs from the label's.
    """

    backend = SpatialCrop.backend

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
        sizes = (spatial_size,) if isinstance(spatial_size, Integral) else tuple(spatial_size)
        if not sizes or not all(isinstance(s, Integral) and not isinstance(s, bool) and s > 0 for s in sizes):
            raise ValueError(f"spatial_size must be a positive int or a sequence of them, found {spatial_size!r}.")
        if isinstance(num_samples, bool) or not isinstance(num_samples, Integral) or num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, found {num_samples!r}.")
        if isinstance(pos, bool) or not isinstance(pos, Real):
            raise TypeError(f"pos must be a real number in [0, 1], found {type(pos).__name__}.")
        if not 0.0 <= pos <= 1.0:
            raise ValueError(f"pos must be in [0, 1], found {pos}.")
        self.label_key = label_key
        self.spatial_size = spatial_size if isinstance(spatial_size, Integral) else tuple(int(s) for s in sizes)
        self.num_samples = int(num_samples)
        self.pos = float(pos)
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

    def randomize(self, label: torch.Tensor) -> None:
        """Draw the start corner of every patch in ``label`` (1, *S), already at least ``spatial_size``."""
        shape = np.asarray(label.shape[1:])
        size = np.asarray(self.roi_size(len(shape)))
        flat = label.reshape(-1)
        objects = torch.unique(flat[flat > 0])
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

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        d = dict(data)
        if self.label_key not in d:
            raise ValueError(f"label_key {self.label_key!r} is missing from the data, found keys {list(d)}.")
        label = d[self.label_key]
        if len(label.shape) not in (3, 4) or label.shape[0] != 1:
            raise ValueError(
                f"data[{self.label_key!r}] must be a (1, H, W) or (1, D, H, W) instance label, "
                f"found shape {tuple(label.shape)}."
            )
        spatial_shape = tuple(label.shape[1:])
        size = self.roi_size(len(spatial_shape))
        for key in self.key_iterator(d):
            if tuple(d[key].shape[1:]) != spatial_shape:
                raise ValueError(
                    f"data[{key!r}] has spatial shape {tuple(d[key].shape[1:])}, "
                    f"expected that of data[{self.label_key!r}]: {spatial_shape}."
                )
        padded_shape = tuple(max(s, r) for s, r in zip(spatial_shape, size))
        label = self._pad(label, padded_shape, IGNORE_LABEL)
        self.randomize(label_tensor(label))

        samples: list[dict[Hashable, Any]] = [dict(d) for _ in self._starts]
        for sample in samples:
            for key in set(d).difference(self.keys):
                sample[key] = deepcopy(d[key])
        for key in self.key_iterator(d):
            array = label if key == self.label_key else self._pad(d[key], padded_shape, 0)
            for index, (sample, start) in enumerate(zip(samples, self._starts)):
                patch = SpatialCrop(roi_start=start, roi_end=tuple(s + r for s, r in zip(start, size)))(array)
                if isinstance(patch, MetaTensor):
                    patch.meta[ImageMetaKey.PATCH_INDEX] = index
                sample[key] = patch
        return samples

    @staticmethod
    def _pad(array: NdarrayOrTensor, padded_shape: tuple[int, ...], value: int) -> NdarrayOrTensor:
        """Pad ``array`` (C, *S) symmetrically with ``value`` to ``padded_shape``; unchanged if already there."""
        if tuple(array.shape[1:]) == padded_shape:
            return array
        signed = array.dtype.kind in "if" if isinstance(array, np.ndarray) else array.dtype.is_signed
        if value < 0 and not signed:
            raise TypeError(
                f"the label must be padded with {value} (ignore) but its dtype {array.dtype} cannot hold it; "
                "cast it to a signed integer or float type first (e.g. CastToTyped)."
            )
        return SpatialPad(spatial_size=padded_shape, value=value)(array)
