"""Leave the border of every labeled object unlabeled, as in data whose object boundaries are not annotated."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type

from spoco_monai.transforms.label_tensor import label_tensor

__all__ = ["UnlabeledBorder", "UnlabeledBorderd"]


class UnlabeledBorder(Transform):
    """Set the outermost ``width`` voxels of every labeled object to 0 (unlabeled).

    Some training data leave the boundaries between objects unlabeled (e.g. the membranes between neurons in EM:
    the gala volume labels them 0), and a network trained on them places the boundary voxels freely. Masks painted
    up to the membrane then teach it to put the membrane with the object, which merges neighbours; removing the
    masks' border makes such annotations look like the data the network learned from. A voxel is on the border when
    one of its face neighbours (6 in 3D, 4 in 2D), up to ``width`` steps away, holds another id (another object, 0
    or -1). Ignored voxels (-1) and unlabeled ones stay as they are.

    Args:
        width: voxels removed from each object's border, >= 1.

    Raises:
        ValueError: ``width`` below 1.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, width: int = 1) -> None:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an integer >= 1, found {width!r}.")
        self.width = width

    def __call__(self, label: NdarrayOrTensor) -> NdarrayOrTensor:
        """``label`` of any shape (e.g. (1, *S)) with object ids > 0; returns the same type, dtype and device."""
        values = label_tensor(label).cpu().numpy()
        squeezed = values.reshape(values.shape[1:]) if values.ndim > 2 and values.shape[0] == 1 else values
        current = squeezed.copy()
        for _ in range(self.width):
            border = np.zeros(current.shape, dtype=bool)
            for axis in range(current.ndim):
                before = (slice(None),) * axis + (slice(None, -1),)
                after = (slice(None),) * axis + (slice(1, None),)
                differs = current[before] != current[after]
                border[before] |= differs
                border[after] |= differs
            current = np.where((current > 0) & border, 0, current)
        result = current.reshape(values.shape)
        return convert_to_dst_type(torch.as_tensor(result), label)[0]


class UnlabeledBorderd(MapTransform):
    """Dictionary version of :class:`UnlabeledBorder`.

    Args:
        keys: keys of the label images.
        width: voxels removed from each object's border, >= 1.
        allow_missing_keys: don't raise if a key in ``keys`` is missing.
    """

    backend = UnlabeledBorder.backend

    def __init__(self, keys: KeysCollection, width: int = 1, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.border = UnlabeledBorder(width)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.border(d[key])
        return d
