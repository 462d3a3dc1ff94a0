"""The foreground target of the optional foreground channel, derived from instance labels."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

__all__ = ["ForegroundTarget", "ForegroundTargetd"]


class ForegroundTarget(Transform):
    """Foreground target of an instance label: 1 on objects, 0 on background, -1 where unknown.

    ``label > 0`` is foreground and ``label < 0`` (ignore) unknown. Label 0 is background in dense labels
    (``unlabeled_is_background=True``, apply before any sparse annotation simulation) and unknown in
    positive-unlabeled labels (``unlabeled_is_background=False``), where 0 mixes unannotated objects with
    the background.

    Args:
        unlabeled_is_background: read label 0 as background (dense labels) or as unknown (sparse labels).
    """

    def __init__(self, unlabeled_is_background: bool = True) -> None:
        if not isinstance(unlabeled_is_background, bool):
            raise TypeError(f"unlabeled_is_background must be a bool, found {unlabeled_is_background!r}.")
        self.unlabeled_is_background = unlabeled_is_background

    def __call__(self, label: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Map a label array (any shape; integer ids, also when stored as floats, as ``LoadImage`` returns
        them) to a float32 target of the same shape and type."""
        backend = torch if isinstance(label, torch.Tensor) else np
        zero_value = 0.0 if self.unlabeled_is_background else -1.0
        target = backend.where(label > 0, 1.0, backend.where(label < 0, -1.0, zero_value))
        return target.float() if backend is torch else target.astype(np.float32)


class ForegroundTargetd(MapTransform):
    """Dictionary version of :class:`ForegroundTarget`: ``data[output_key] = ForegroundTarget(data[key])``.

    Args:
        keys: the instance label key (one key).
        output_key: where to store the target (``"foreground"``, the key the SPOCO trainer passes to the loss).
        unlabeled_is_background: see :class:`ForegroundTarget`.
        allow_missing_keys: don't raise if the label is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_key: str = "foreground",
        unlabeled_is_background: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"ForegroundTargetd takes one label key, found {list(self.keys)}.")
        self.output_key = output_key
        self.target = ForegroundTarget(unlabeled_is_background)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.target(d[key])
        return d
