"""Simulated clicks: one point inside each chosen object of a dense label, plus optional background clicks."""

from __future__ import annotations

import os
from collections.abc import Hashable
from typing import Any

import numpy as np
from scipy import ndimage

from spoco_monai.transforms.simulated_annotator import BACKGROUND_ANNOTATION, SimulatedAnnotator, SimulatedAnnotatord

__all__ = ["POINT_LOCATIONS", "SimulatePoints", "SimulatePointsd", "object_depth"]

#: where :class:`SimulatePoints` clicks inside an object
POINT_LOCATIONS = ("center", "random")


def object_depth(ids: np.ndarray, object_id: int) -> tuple[tuple[slice, ...], np.ndarray]:
    """The distance of each pixel of one object to the nearest pixel outside it, inside the object's bounding box.

    Touching objects part at their common border, because only the object's own pixels count as inside.

    Returns:
        the bounding box (slices into ``ids``) and the float distance map over it (0 outside the object).
    """
    # one bounding box per object keeps the cost at the object's size, not the image's
    box = ndimage.find_objects((ids == object_id).astype(np.int32))[0]
    padded = np.pad(ids[box] == object_id, 1)
    depth = ndimage.distance_transform_edt(padded)[(slice(1, -1),) * ids.ndim]
    return box, depth


class SimulatePoints(SimulatedAnnotator):
    """Click once inside each chosen object of a dense instance label (an annotator of points).

    The click of an object is at its ``location``:

    - ``"center"``: the pixel deepest inside the object (the maximum of its distance to the outside; the first in
      raster order on a tie), which draws no random number;
    - ``"random"``: a pixel drawn uniformly among the object's pixels at least ``depth`` times that maximum deep,
      so that clicks fall inside the object as a person's would, not on its border.

    With ``background_points`` k > 0, k background pixels (``background_id``; never ignored pixels, -1) are clicked
    too, drawn uniformly without replacement (all of them if there are fewer).

    Output: the point annotation image, ``(1, *S)`` int64 of the label's type: the object's id at its click,
    -1 at a background click, 0 elsewhere (see :mod:`~spoco_monai.transforms.simulated_annotator`). Manifest entry:
    ``{"objects": [[id, *coordinates], ...], "background": [[*coordinates], ...]}`` with spatial coordinates.

    Points in images of real annotations come from a napari Points layer: :func:`spoco_monai.data.read_points_csv`
    and :func:`spoco_monai.data.points_to_image`.

    Args:
        fraction: fraction of the objects to click, in (0, 1].
        location: ``"center"`` or ``"random"``.
        depth: with ``"random"``, the smallest depth of a click as a fraction of the object's largest, in [0, 1].
        background_points: number of background clicks, >= 0.
        seed: selects the simulated annotation.
        background_id: id of the background in the dense labels, >= 0.
        manifest_path: optional JSON file recording the clicks of every image.

    Raises:
        TypeError, ValueError: as :class:`SimulatedAnnotator`; ValueError also for an unknown ``location``, a
            ``depth`` outside [0, 1] or a negative ``background_points``.
    """

    def __init__(
        self,
        fraction: float = 1.0,
        location: str = "center",
        depth: float = 0.5,
        background_points: int = 0,
        seed: int = 0,
        background_id: int = 0,
        manifest_path: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(fraction, seed, background_id, manifest_path)
        if location not in POINT_LOCATIONS:
            raise ValueError(f"location must be one of {POINT_LOCATIONS}, found {location!r}.")
        if not 0.0 <= depth <= 1.0:
            raise ValueError(f"depth must be in [0, 1], found {depth}.")
        if isinstance(background_points, bool) or not isinstance(background_points, int) or background_points < 0:
            raise ValueError(f"background_points must be an int >= 0, found {background_points!r}.")
        self.location = location
        self.depth = float(depth)
        self.background_points = background_points
        self.draws_random_numbers = location == "random" or background_points > 0

    def annotate(self, ids: np.ndarray, chosen: list[int], identity: str | None) -> tuple[np.ndarray, Any]:
        points = np.zeros(ids.shape, dtype=np.int64)
        objects = []
        for object_id in chosen:
            box, depth = object_depth(ids, object_id)
            if self.location == "center":
                flat = int(np.argmax(depth))
            else:
                candidates = np.flatnonzero(depth >= self.depth * depth.max())
                flat = int(self.generator(identity, "point", object_id).choice(candidates))
            where = tuple(int(c) + s.start for c, s in zip(np.unravel_index(flat, depth.shape), box))
            points[where] = object_id
            objects.append([object_id, *where])
        background = []
        if self.background_points > 0:
            candidates = np.flatnonzero(ids == self.background_id)
            count = min(self.background_points, candidates.size)
            drawn = np.sort(self.generator(identity, "background point", 0).choice(candidates, count, replace=False))
            for flat in drawn:
                where = tuple(int(c) for c in np.unravel_index(int(flat), ids.shape))
                points[where] = BACKGROUND_ANNOTATION
                background.append(list(where))
        return points, {"objects": objects, "background": background}


class SimulatePointsd(SimulatedAnnotatord):
    """Dictionary version of :class:`SimulatePoints`: clicks on ``data[label_key]`` written to ``data[output_key]``.

    Args:
        label_key: key of the dense label ``(1, *S)``.
        output_key: key of the point annotation image.
        fraction, location, depth, background_points, seed, background_id, manifest_path: as :class:`SimulatePoints`.
        id_key: optional key of ``data`` holding each image's identity (otherwise the label's file name).
        allow_missing_keys: don't raise if ``label_key`` is missing.
    """

    def __init__(
        self,
        label_key: Hashable = "label",
        output_key: Hashable = "points",
        fraction: float = 1.0,
        location: str = "center",
        depth: float = 0.5,
        background_points: int = 0,
        seed: int = 0,
        background_id: int = 0,
        manifest_path: str | os.PathLike | None = None,
        id_key: Hashable | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        annotator = SimulatePoints(fraction, location, depth, background_points, seed, background_id, manifest_path)
        super().__init__(annotator, label_key, output_key, id_key, allow_missing_keys)
