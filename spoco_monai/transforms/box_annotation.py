"""Simulated boxes: the bounding box of each chosen object of a dense label."""

from __future__ import annotations

import os
from collections.abc import Hashable
from typing import Any

import numpy as np
from scipy import ndimage

from spoco_monai.transforms.simulated_annotator import SimulatedAnnotator, SimulatedAnnotatord

__all__ = ["SimulateBoxes", "SimulateBoxesd"]


class SimulateBoxes(SimulatedAnnotator):
    """Draw the bounding box of each chosen object of a dense instance label (an annotator of boxes).

    Output: an int64 numpy array ``(N, 1 + 2 * ndim)``, one row ``[id, start_0, ..., start_n, stop_0, ..., stop_n]``
    per chosen object in ascending id order, each box half-open like a Python slice (``stop`` is one past the
    object's last pixel). Boxes need no random number; only the choice of objects (``fraction < 1``) depends on
    the seed. Manifest entry: the rows as lists. :func:`spoco_monai.data.write_boxes_csv` saves them.

    Args:
        fraction: fraction of the objects to box, in (0, 1].
        seed: selects the simulated annotation.
        background_id: id of the background in the dense labels, >= 0.
        manifest_path: optional JSON file recording the boxes of every image.

    Raises:
        TypeError, ValueError: as :class:`SimulatedAnnotator`.
    """

    output_is_image = False

    def annotate(self, ids: np.ndarray, chosen: list[int], identity: str | None) -> tuple[np.ndarray, Any]:
        boxes = np.zeros((len(chosen), 1 + 2 * ids.ndim), dtype=np.int64)
        # find_objects indexes its result by id - 1; ids outside the chosen ones (and -1) are zeroed first
        chosen_only = np.where(np.isin(ids, chosen), ids, 0)
        slices = ndimage.find_objects(chosen_only)
        for row, object_id in enumerate(chosen):
            box = slices[object_id - 1]
            boxes[row] = [object_id, *(s.start for s in box), *(s.stop for s in box)]
        return boxes, boxes.tolist()


class SimulateBoxesd(SimulatedAnnotatord):
    """Dictionary version of :class:`SimulateBoxes`: the boxes of ``data[label_key]`` written to ``data[output_key]``.

    Args:
        label_key: key of the dense label ``(1, *S)``.
        output_key: key of the ``(N, 1 + 2 * ndim)`` box array.
        fraction, seed, background_id, manifest_path: as :class:`SimulateBoxes`.
        id_key: optional key of ``data`` holding each image's identity (otherwise the label's file name).
        allow_missing_keys: don't raise if ``label_key`` is missing.
    """

    def __init__(
        self,
        label_key: Hashable = "label",
        output_key: Hashable = "boxes",
        fraction: float = 1.0,
        seed: int = 0,
        background_id: int = 0,
        manifest_path: str | os.PathLike | None = None,
        id_key: Hashable | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        annotator = SimulateBoxes(fraction, seed, background_id, manifest_path)
        super().__init__(annotator, label_key, output_key, id_key, allow_missing_keys)
