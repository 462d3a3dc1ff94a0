"""Sparse object masks grown from clicks or scribbles, so that the SPOCO losses train on point annotations."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type
from scipy import ndimage
from skimage.filters import sobel
from skimage.segmentation import watershed

from spoco_monai.transforms.label_tensor import label_tensor
from spoco_monai.transforms.simulated_annotator import BACKGROUND_ANNOTATION
from spoco_monai.validation import check_positive

__all__ = ["ELEVATIONS", "GrowFromPoints", "GrowFromPointsd", "elevation_map"]

#: what :class:`GrowFromPoints` floods
ELEVATIONS = ("gradient", "image", "inverted")


def elevation_map(image: np.ndarray, elevation: str) -> np.ndarray:
    """What a grown mask's watershed floods, from a ``(C, *S)`` float image: its gradient magnitude
    (``"gradient"``: Sobel, the largest over the channels), the image itself (``"image"``) or its negative
    (``"inverted"``), the largest over the channels."""
    if elevation == "gradient":
        return np.max([sobel(channel) for channel in image], axis=0)
    return image.max(axis=0) if elevation == "image" else -image.max(axis=0)


class GrowFromPoints(Transform):
    """Grow each clicked (or scribbled) object into a mask by a seeded watershed, limited to a radius around it.

    The SPOCO losses need object masks; a click gives none. This transform turns a point or scribble annotation
    (object id > 0 at its clicks or strokes, -1 on the background, 0 elsewhere; see
    :mod:`~spoco_monai.transforms.simulated_annotator`) into sparse positive-unlabeled labels:

    1. the elevation is the image's gradient magnitude (``"gradient"``: Sobel, the largest over the channels), the
       image itself (``"image"``, e.g. a boundary map) or its negative (``"inverted"``, e.g. a localisation or
       foreground probability map, high inside objects);
    2. a watershed of the elevation floods from every object's clicks and from the background clicks (one marker
       for all of them), so that objects part along the edges between them and stop at annotated background;
    3. an object keeps the pixels of its basin within ``radius`` (Euclidean, in pixels) of its own clicks, because
       far from a click the basin is a guess; the rest, background basins included, is 0 (unlabeled).

    A click grows into a disc-like mask of the object's near part; the SPOCO terms then learn from it, the
    unlabeled push and consistency terms from everything else.

    Args:
        radius: largest distance in pixels of a mask pixel from its object's clicks, > 0 (about the object radius).
        elevation: ``"gradient"``, ``"image"`` or ``"inverted"``.

    Raises:
        ValueError: a non-positive ``radius`` or an unknown ``elevation``.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, radius: float, elevation: str = "gradient") -> None:
        self.radius = check_positive("radius", radius)
        if elevation not in ELEVATIONS:
            raise ValueError(f"elevation must be one of {ELEVATIONS}, found {elevation!r}.")
        self.elevation = elevation

    def __call__(self, image: NdarrayOrTensor, annotation: NdarrayOrTensor) -> NdarrayOrTensor:
        """Grow the masks.

        Args:
            image: ``(C, *S)`` image (2 or 3 spatial axes).
            annotation: ``(1, *S)`` point or scribble annotation.

        Returns:
            ``(1, *S)`` int64 sparse labels (object id inside its mask, 0 unlabeled) of the annotation's type.

        Raises:
            ValueError: shapes that do not match, or annotation values below -1.
        """
        values = label_tensor(annotation)
        pixels = torch.as_tensor(image, device="cpu") if not isinstance(image, torch.Tensor) else image.detach().cpu()
        if values.ndim not in (3, 4) or values.shape[0] != 1 or tuple(pixels.shape[1:]) != tuple(values.shape[1:]):
            raise ValueError(
                f"expected an image (C, *S) and an annotation (1, *S) with 2 or 3 spatial axes S, found image "
                f"{tuple(pixels.shape)} and annotation {tuple(values.shape)}."
            )
        clicks = values[0].detach().cpu().numpy().astype(np.int64)
        if clicks.size and int(clicks.min()) < BACKGROUND_ANNOTATION:
            raise ValueError(f"annotation values must be >= -1 (-1 = background), found {int(clicks.min())}.")
        grown = self.grow(np.asarray(pixels.float().numpy()), clicks)
        dtype = torch.int64 if isinstance(annotation, torch.Tensor) else np.int64
        return convert_to_dst_type(grown[None], annotation, dtype=dtype)[0]

    def grow(self, image: np.ndarray, clicks: np.ndarray) -> np.ndarray:
        """The ``S`` int64 masks from a ``(C, *S)`` float image and ``S`` annotation (checked by the caller)."""
        if not bool((clicks > 0).any()):
            return np.zeros(clicks.shape, dtype=np.int64)
        elevation = elevation_map(image, self.elevation)
        background = int(clicks.max()) + 1
        markers = np.where(clicks == BACKGROUND_ANNOTATION, background, clicks)
        basins = watershed(elevation, markers)
        grown = np.zeros(clicks.shape, dtype=np.int64)
        boxes = ndimage.find_objects(np.where(basins == background, 0, basins))
        # one distance transform per object, over its basin's bounding box (which holds all its clicks)
        for object_id, box in enumerate(boxes, start=1):
            if box is None:
                continue
            near = ndimage.distance_transform_edt(clicks[box] != object_id) <= self.radius
            grown[box][near & (basins[box] == object_id)] = object_id
        return grown


class GrowFromPointsd(MapTransform):
    """Dictionary version of :class:`GrowFromPoints`: masks grown from ``data[points_key]`` over ``data[image_key]``.

    Args:
        keys: keys the grown labels are written to (usually ``"label"``).
        image_key: key of the ``(C, *S)`` image.
        points_key: key of the ``(1, *S)`` point or scribble annotation.
        radius: largest distance of a mask pixel from its object's clicks, > 0.
        elevation: ``"gradient"``, ``"image"`` or ``"inverted"``.
        allow_missing_keys: don't raise if a key is missing.

    Raises:
        ValueError: as :class:`GrowFromPoints`.
    """

    backend = GrowFromPoints.backend

    def __init__(
        self,
        keys: KeysCollection = "label",
        image_key: Hashable = "image",
        points_key: Hashable = "points",
        radius: float = 10.0,
        elevation: str = "gradient",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.grow = GrowFromPoints(radius, elevation)
        self.image_key = image_key
        self.points_key = points_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.grow(d[self.image_key], d[self.points_key])
        return d
