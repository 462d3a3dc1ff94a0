"""Box annotations in a CSV file: one box per row, ``label, start-0, start-1[, start-2], stop-0, stop-1[, stop-2]``.

Boxes are half-open like Python slices: ``stop`` is one past the box's last pixel, so a box is
``image[start-0:stop-0, start-1:stop-1]``. The rows are those of :class:`~spoco_monai.transforms.SimulateBoxes`.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from spoco_monai.data.points_csv import read_csv_rows

__all__ = ["read_boxes_csv", "write_boxes_csv"]


def _header(ndim: int) -> list[str]:
    return ["label", *(f"start-{i}" for i in range(ndim)), *(f"stop-{i}" for i in range(ndim))]


def write_boxes_csv(path: str | os.PathLike, boxes: np.ndarray) -> None:
    """Write ``(N, 1 + 2 * ndim)`` integer boxes ``[label, starts..., stops...]`` with a header.

    Raises:
        ValueError: boxes that are not ``(N, 5)`` or ``(N, 7)``.
    """
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] not in (5, 7):
        raise ValueError(f"boxes must have shape (N, 5) or (N, 7) (label, starts, stops), found {boxes.shape}.")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(_header((boxes.shape[1] - 1) // 2))
        writer.writerows(boxes.astype(np.int64).tolist())


def read_boxes_csv(path: str | os.PathLike) -> np.ndarray:
    """Read a boxes CSV file.

    Returns:
        int64 ``(N, 1 + 2 * ndim)`` boxes ``[label, starts..., stops...]``.

    Raises:
        ValueError: one line naming the file (and the line) for a missing file, a header that is not
            ``label,start-0,...,stop-0,...`` (2D or 3D), a row with another number of values, a value that is not an
            integer, a label <= 0, or a box whose stop is not past its start.
    """
    path = Path(path)
    rows = read_csv_rows(path, "boxes")
    header = [name.strip() for name in rows[0]] if rows else []
    if header not in (_header(2), _header(3)):
        raise ValueError(
            f"boxes file {path}: expected the header {','.join(_header(2))!r} (or its 3D form), "
            f"found {','.join(header)!r}."
        )
    ndim = (len(header) - 1) // 2
    boxes = np.zeros((len(rows) - 1, len(header)), dtype=np.int64)
    for row_index, row in enumerate(rows[1:]):
        line = row_index + 2
        if len(row) != len(header):
            raise ValueError(f"boxes file {path}, line {line}: expected {len(header)} values, found {len(row)}.")
        try:
            boxes[row_index] = [int(value) for value in row]
        except ValueError:
            raise ValueError(f"boxes file {path}, line {line}: expected integers, found {','.join(row)!r}.") from None
        label, starts, stops = boxes[row_index, 0], boxes[row_index, 1 : 1 + ndim], boxes[row_index, 1 + ndim :]
        if label <= 0:
            raise ValueError(f"boxes file {path}, line {line}: the label must be an object id > 0, found {label}.")
        if bool((starts < 0).any()) or bool((stops <= starts).any()):
            raise ValueError(
                f"boxes file {path}, line {line}: expected 0 <= start < stop on every axis, found starts "
                f"{starts.tolist()} and stops {stops.tolist()}."
            )
    return boxes
