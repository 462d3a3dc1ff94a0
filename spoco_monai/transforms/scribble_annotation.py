"""Simulated scribbles: a stroke along the middle of each chosen object of a dense label, plus background strokes."""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Hashable
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

from spoco_monai.transforms.point_annotation import object_depth
from spoco_monai.transforms.simulated_annotator import BACKGROUND_ANNOTATION, SimulatedAnnotator, SimulatedAnnotatord

__all__ = ["SimulateScribbles", "SimulateScribblesd", "stroke_along"]


def stroke_along(path: np.ndarray, start: tuple[int, ...], length: int | None) -> np.ndarray:
    """The first ``length`` pixels of ``path`` reached from ``start`` stepping between touching pixels (all of
    ``start``'s connected part of ``path`` without a length).

    Breadth-first order grows the stroke along both directions of a thin path at once, so the stroke is the
    piece of the path centred on ``start``; neighbours are visited in raster order, which makes it deterministic.

    Args:
        path: ``S`` boolean mask, e.g. a skeleton; ``start`` must lie on it.
        start: the first pixel.
        length: the number of pixels, or None.

    Returns:
        ``S`` boolean mask of the stroke.
    """
    steps = [step for step in itertools.product((-1, 0, 1), repeat=path.ndim) if any(step)]
    stroke = np.zeros(path.shape, dtype=bool)
    stroke[start] = True
    queue, count = deque([start]), 1
    while queue and (length is None or count < length):
        pixel = queue.popleft()
        for step in steps:
            neighbour = tuple(p + s for p, s in zip(pixel, step))
            inside = all(0 <= n < size for n, size in zip(neighbour, path.shape))
            if inside and path[neighbour] and not stroke[neighbour]:
                stroke[neighbour] = True
                queue.append(neighbour)
                count += 1
                if length is not None and count == length:
                    break
    return stroke


class SimulateScribbles(SimulatedAnnotator):
    """Draw one stroke inside each chosen object of a dense instance label (an annotator of scribbles).

    An object's stroke follows the skeleton (medial axis, :func:`skimage.morphology.skeletonize`) of the object
    shrunk by ``margin`` (its pixels deeper than ``margin``), so that the stroke keeps off the object's border as a
    careful annotator's would. Without ``length`` the stroke is the whole skeleton (no random number is drawn);
    with it, the ``length`` skeleton pixels nearest along the skeleton to a seeded random skeleton pixel
    (:func:`stroke_along`). An object too thin to shrink gets a one-pixel stroke at its deepest pixel.

    With ``background_scribbles`` k > 0, k strokes of ``background_length`` pixels follow the skeleton of the
    background (``background_id``) shrunk by ``margin``, from seeded random starts.

    Output: the scribble annotation image ``(1, *S)`` int64 of the label's type: the object's id on its stroke,
    -1 on background strokes, 0 elsewhere (see :mod:`~spoco_monai.transforms.simulated_annotator`). Manifest entry:
    ``{"objects": {id: pixel count, ...}, "background": pixel count}`` (the strokes themselves are too large to
    record; they follow from the seed).

    Args:
        fraction: fraction of the objects to annotate, in (0, 1].
        length: pixels per object stroke, or None for the whole skeleton.
        margin: distance in pixels a stroke keeps from the object's border, >= 0.
        background_scribbles: number of background strokes, >= 0.
        background_length: pixels per background stroke, >= 1.
        seed: selects the simulated annotation.
        background_id: id of the background in the dense labels, >= 0.
        manifest_path: optional JSON file recording the annotation of every image.

    Raises:
        TypeError, ValueError: as :class:`SimulatedAnnotator`; ValueError also for a ``length`` or
            ``background_length`` below 1, or a negative ``margin`` or ``background_scribbles``.
    """

    def __init__(
        self,
        fraction: float = 1.0,
        length: int | None = None,
        margin: float = 1.0,
        background_scribbles: int = 0,
        background_length: int = 20,
        seed: int = 0,
        background_id: int = 0,
        manifest_path: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(fraction, seed, background_id, manifest_path)
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
            raise ValueError(f"length must be None or an int >= 1, found {length!r}.")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, found {margin}.")
        counts = (("background_scribbles", background_scribbles, 0), ("background_length", background_length, 1))
        for name, value, lowest in counts:
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise ValueError(f"{name} must be an int >= {lowest}, found {value!r}.")
        self.length = length
        self.margin = float(margin)
        self.background_scribbles = background_scribbles
        self.background_length = background_length
        self.draws_random_numbers = length is not None or background_scribbles > 0

    def annotate(self, ids: np.ndarray, chosen: list[int], identity: str | None) -> tuple[np.ndarray, Any]:
        scribbles = np.zeros(ids.shape, dtype=np.int64)
        objects = {}
        for object_id in chosen:
            box, depth = object_depth(ids, object_id)
            skeleton = skeletonize(depth > self.margin)
            if not skeleton.any():
                skeleton = np.zeros(depth.shape, dtype=bool)
                skeleton[np.unravel_index(int(np.argmax(depth)), depth.shape)] = True
            stroke = self._stroke(skeleton, self.length, identity, "scribble", object_id)
            scribbles[box][stroke] = object_id
            objects[str(object_id)] = int(stroke.sum())
        background = np.zeros(ids.shape, dtype=bool)
        if self.background_scribbles > 0:
            inner = ndimage.distance_transform_edt(ids == self.background_id) > self.margin
            skeleton = skeletonize(inner)
            for index in range(self.background_scribbles):
                if skeleton.any():
                    purpose = f"background scribble {index}"
                    background |= self._stroke(skeleton, self.background_length, identity, purpose, 0)
            scribbles[background & (scribbles == 0)] = BACKGROUND_ANNOTATION
        return scribbles, {"objects": objects, "background": int(background.sum())}

    def _stroke(
        self, skeleton: np.ndarray, length: int | None, identity: str | None, purpose: str, object_id: int
    ) -> np.ndarray:
        """A stroke along ``skeleton``: all of it without ``length``, else a piece around a seeded pixel."""
        if length is None:
            return skeleton
        candidates = np.flatnonzero(skeleton)
        start = int(self.generator(identity, purpose, object_id).choice(candidates))
        return stroke_along(skeleton, tuple(int(c) for c in np.unravel_index(start, skeleton.shape)), length)


class SimulateScribblesd(SimulatedAnnotatord):
    """Dictionary version of :class:`SimulateScribbles`: strokes on ``data[label_key]`` written to ``data[output_key]``.

    Args:
        label_key: key of the dense label ``(1, *S)``.
        output_key: key of the scribble annotation image.
        fraction, length, margin, background_scribbles, background_length, seed, background_id, manifest_path: as
            :class:`SimulateScribbles`.
        id_key: optional key of ``data`` holding each image's identity (otherwise the label's file name).
        allow_missing_keys: don't raise if ``label_key`` is missing.
    """

    def __init__(
        self,
        label_key: Hashable = "label",
        output_key: Hashable = "scribbles",
        fraction: float = 1.0,
        length: int | None = None,
        margin: float = 1.0,
        background_scribbles: int = 0,
        background_length: int = 20,
        seed: int = 0,
        background_id: int = 0,
        manifest_path: str | os.PathLike | None = None,
        id_key: Hashable | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        annotator = SimulateScribbles(
            fraction, length, margin, background_scribbles, background_length, seed, background_id, manifest_path
        )
        super().__init__(annotator, label_key, output_key, id_key, allow_missing_keys)
