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

    Positive-unlabeled labels with ``annotated_fraction`` (the fraction p of the objects that were labeled, as in
    SPOCO@p) get a second channel: the foreground prior of the image's unknown pixels, which
    :class:`~spoco_monai.losses.ForegroundLoss` needs to learn the background without background labels. With L
    labeled object pixels among N known or unknown pixels (label >= 0), the image's foreground is estimated as
    L / p pixels, so the unknown pixels hold (L / p - L) / (N - L) of it, clipped to [0, 1]. The estimate is per
    image, so apply this before cropping. It assumes that the labeled objects are a random choice of the image's
    objects, not its largest or brightest ones.

    Args:
        unlabeled_is_background: read label 0 as background (dense labels) or as unknown (sparse labels).
        annotated_fraction: None, or p in (0, 1] for positive-unlabeled labels (``unlabeled_is_background=False``).
    """

    def __init__(self, unlabeled_is_background: bool = True, annotated_fraction: float | None = None) -> None:
        if not isinstance(unlabeled_is_background, bool):
            raise TypeError(f"unlabeled_is_background must be a bool, found {unlabeled_is_background!r}.")
        if annotated_fraction is not None:
            if unlabeled_is_background:
                raise ValueError("annotated_fraction is for positive-unlabeled labels (unlabeled_is_background=False).")
            if isinstance(annotated_fraction, bool) or not 0.0 < float(annotated_fraction) <= 1.0:
                raise ValueError(f"annotated_fraction must be in (0, 1], found {annotated_fraction!r}.")
        self.unlabeled_is_background = unlabeled_is_background
        self.annotated_fraction = None if annotated_fraction is None else float(annotated_fraction)

    def __call__(self, label: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Map a label array (any shape; integer ids, also when stored as floats, as ``LoadImage`` returns
        them) to a float32 target of the same shape and type; with ``annotated_fraction``, the label is
        channel-first (1, *S) and the result (2, *S): the target and the unknown pixels' foreground prior."""
        backend = torch if isinstance(label, torch.Tensor) else np
        zero_value = 0.0 if self.unlabeled_is_background else -1.0
        target = backend.where(label > 0, 1.0, backend.where(label < 0, -1.0, zero_value))
        target = target.float() if backend is torch else target.astype(np.float32)
        if self.annotated_fraction is None:
            return target
        if label.shape[0] != 1:
            raise ValueError(f"annotated_fraction needs a channel-first label (1, *S), found shape {tuple(label.shape)}.")
        labeled = float((label > 0).sum())
        known_or_unknown = float((label >= 0).sum())
        unknown = known_or_unknown - labeled
        prior = 0.0 if unknown == 0 else min(max((labeled / self.annotated_fraction - labeled) / unknown, 0.0), 1.0)
        if backend is torch:
            return torch.cat([target, torch.full_like(target, prior)])
        return np.concatenate([target, np.full_like(target, prior)])


class ForegroundTargetd(MapTransform):
    """Dictionary version of :class:`ForegroundTarget`: ``data[output_key] = ForegroundTarget(data[key])``.

    Args:
        keys: the instance label key (one key).
        output_key: where to store the target (``"foreground"``, the key the SPOCO trainer passes to the loss).
        unlabeled_is_background: see :class:`ForegroundTarget`.
        annotated_fraction: see :class:`ForegroundTarget`.
        allow_missing_keys: don't raise if the label is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_key: str = "foreground",
        unlabeled_is_background: bool = True,
        annotated_fraction: float | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"ForegroundTargetd takes one label key, found {list(self.keys)}.")
        self.output_key = output_key
        self.target = ForegroundTarget(unlabeled_is_background, annotated_fraction)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.target(d[key])
        return d
