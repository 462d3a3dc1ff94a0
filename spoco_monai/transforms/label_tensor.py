"""Instance label arrays as torch tensors on which the label computations of this package work."""

from __future__ import annotations

import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor

__all__ = ["label_tensor"]


def label_tensor(label: NdarrayOrTensor) -> torch.Tensor:
    """``label`` (numpy array, tensor or MetaTensor, any shape) as a plain tensor on its device.

    Unsigned types wider than uint8 (e.g. uint16 TIFF labels) become int64, because PyTorch implements
    ``unique``, ``min`` and ``isin`` only partially for them; other types are returned as they are, without
    a copy where the input is already a tensor.
    """
    values = label.as_tensor() if isinstance(label, MetaTensor) else torch.as_tensor(label)
    if not values.dtype.is_signed and values.dtype not in (torch.uint8, torch.bool):
        return values.to(torch.int64)
    return values
