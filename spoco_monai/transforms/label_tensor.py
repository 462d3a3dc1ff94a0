"""Instance label arrays as torch tensors on which the label computations of this package work."""

from __future__ import annotations

import torch
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_tensor

__all__ = ["label_tensor"]


def label_tensor(label: NdarrayOrTensor) -> torch.Tensor:
    """``label`` (numpy array, tensor or MetaTensor, any shape) as a plain tensor on its device.

    Unsigned types wider than uint8 (e.g. uint16 TIFF labels) become signed, because PyTorch implements
    ``unique``, ``min`` and ``isin`` only partially for them (MONAI's ``convert_to_tensor`` makes numpy's int32 or
    int64, a tensor's become int64); other types are returned as they are, without a copy where the input is
    already a contiguous tensor.
    """
    values = convert_to_tensor(label, track_meta=False)
    if not values.dtype.is_signed and values.dtype not in (torch.uint8, torch.bool):
        return values.to(torch.int64)
    return values
