"""Post-transform removing the background segments of a sparse-trained model with an intensity foreground mask."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_numpy
from skimage.filters import threshold_otsu

from spoco_monai.clustering import drop_segments_outside_foreground


class RemoveBackgroundSegmentsd(MapTransform):
    """Set to 0 the segments of ``data[key]`` that lie mostly on the image's background.

    A model trained on sparse (positive-unlabeled) annotation has never seen the background labeled, so its
    clustering returns the background as one or more segments. For images whose objects are brighter than
    their surroundings (fluorescence), the foreground is ``image > threshold`` (Otsu's threshold of each
    image by default; ``bright_foreground=False`` flips it for dark objects), and a segment is kept when at
    least ``min_foreground_fraction`` of its pixels are foreground, with its full shape from the embeddings.

    Args:
        keys: keys of the ``(1, *S)`` instance labels to filter.
        image_key: key of the ``(C, *S)`` image the labels were predicted from.
        threshold: intensity threshold of the foreground; None computes Otsu's threshold per image.
        bright_foreground: whether the objects are brighter (True) or darker (False) than the background.
        min_foreground_fraction: smallest fraction of foreground pixels of a kept segment.
        channel: image channel the threshold applies to.
        allow_missing_keys: skip keys that are absent.

    Raises:
        ValueError: for a fraction outside ``[0, 1]``, a channel the image lacks or labels whose spatial
            shape differs from the image's.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        keys: KeysCollection,
        image_key: str = "image",
        threshold: float | None = None,
        bright_foreground: bool = True,
        min_foreground_fraction: float = 0.5,
        channel: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0.0 <= min_foreground_fraction <= 1.0:
            raise ValueError(f"min_foreground_fraction must be in [0, 1], got {min_foreground_fraction}.")
        self.image_key = image_key
        self.threshold = threshold
        self.bright_foreground = bright_foreground
        self.min_foreground_fraction = min_foreground_fraction
        self.channel = channel

    def foreground(self, image: np.ndarray | torch.Tensor) -> np.ndarray:
        """The ``S`` boolean foreground mask of a ``(C, *S)`` image."""
        if not -image.shape[0] <= self.channel < image.shape[0]:
            raise ValueError(f"channel {self.channel} does not exist in an image of {image.shape[0]} channel(s).")
        intensities = convert_to_numpy(image[self.channel], dtype=np.float32)
        threshold = self.threshold
        if threshold is None:
            if intensities.min() == intensities.max():
                # a constant image has no Otsu threshold: all of it counts as background
                return np.zeros(intensities.shape, dtype=bool)
            threshold = threshold_otsu(intensities)
        return intensities > threshold if self.bright_foreground else intensities < threshold

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        foreground = self.foreground(d[self.image_key])
        for key in self.key_iterator(d):
            labels = d[key]
            if tuple(labels.shape) != (1, *foreground.shape):
                raise ValueError(
                    f"{key!r} must have shape (1, *S) = {(1, *foreground.shape)} like {self.image_key!r}, "
                    f"got {tuple(labels.shape)}."
                )
            kept = drop_segments_outside_foreground(
                convert_to_numpy(labels[0], dtype=np.int64), foreground, self.min_foreground_fraction
            )
            d[key] = convert_to_dst_type(kept[None], dst=labels, dtype=labels.dtype)[0]
        return d
