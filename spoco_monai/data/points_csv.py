"""Point annotations as napari saves a Points layer: a CSV file with columns ``index, axis-0, axis-1[, axis-2]``.

napari writes one row per point, its coordinates as floats in the layer's data coordinates, and one more
column per point property. A property column ``label`` (the default ``label_column``) holds each point's
annotation value: the object's id (> 0) or -1 for a background click; without it every point is an object
click and the points are numbered 1..N in file order. :func:`points_to_image` turns the table into the point
annotation image the training transforms use (see :mod:`spoco_monai.transforms.simulated_annotator`).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

__all__ = ["image_to_points", "points_to_image", "read_points_csv", "write_points_csv"]


def read_csv_rows(path: Path, kind: str) -> list[list[str]]:
    """The rows of the CSV file ``path``; an unreadable file is one ``ValueError`` naming it as a ``kind`` file."""
    try:
        with open(path, newline="") as handle:
            return list(csv.reader(handle))
    except OSError as error:
        raise ValueError(f"{kind} file {path} cannot be read: {error.strerror or error}.") from None


def _number(path: Path, line: int, column: str, text: str, integral: bool) -> float:
    """One value of the file, with an error naming the file, line and column."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"points file {path}, line {line}: column {column!r} must be a number, found {text!r}."
        ) from None
    if not np.isfinite(value) or (integral and value != round(value)):
        kind = "an integer" if integral else "a finite number"
        raise ValueError(f"points file {path}, line {line}: column {column!r} must be {kind}, found {text!r}.")
    return value


def read_points_csv(path: str | os.PathLike, label_column: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """Read a napari Points CSV file.

    Args:
        path: the CSV file.
        label_column: name of the property column with each point's annotation value (> 0 object id, -1
            background); points are numbered 1..N in file order when the file has no such column.

    Returns:
        ``(coordinates, labels)``: float64 ``(N, ndim)`` coordinates (axis-0 first) and int64 ``(N,)`` labels.

    Raises:
        ValueError: one line naming the file (and the line) for a missing file, no header, no ``axis-*``
            columns, a row with too few or too many values, a value that is not a number, or a label that is
            neither > 0 nor -1.
    """
    path = Path(path)
    rows = read_csv_rows(path, "points")
    if not rows:
        raise ValueError(f"points file {path} is empty: expected a header 'index,axis-0,axis-1[,axis-2]'.")
    header = [name.strip() for name in rows[0]]
    axes = [name for name in header if name.startswith("axis-")]
    if [f"axis-{i}" for i in range(len(axes))] != axes or len(axes) not in (2, 3):
        raise ValueError(
            f"points file {path}: expected a napari Points header with columns axis-0, axis-1[, axis-2], "
            f"found {','.join(header)!r}."
        )
    axis_columns = [header.index(name) for name in axes]
    label_index = header.index(label_column) if label_column in header else None
    coordinates = np.zeros((len(rows) - 1, len(axes)), dtype=np.float64)
    labels = np.arange(1, len(rows), dtype=np.int64)
    for row_index, row in enumerate(rows[1:]):
        line = row_index + 2
        if len(row) != len(header):
            raise ValueError(
                f"points file {path}, line {line}: expected {len(header)} values ({','.join(header)}), "
                f"found {len(row)}."
            )
        for axis, column in enumerate(axis_columns):
            coordinates[row_index, axis] = _number(path, line, header[column], row[column], integral=False)
        if label_index is not None:
            label = int(_number(path, line, label_column, row[label_index], integral=True))
            if label == 0 or label < -1:
                raise ValueError(
                    f"points file {path}, line {line}: {label_column!r} must be an object id > 0 or -1 (background), "
                    f"found {label}."
                )
            labels[row_index] = label
    return coordinates, labels


def write_points_csv(
    path: str | os.PathLike, coordinates: np.ndarray, labels: np.ndarray | None = None, label_column: str = "label"
) -> None:
    """Write points as napari saves a Points layer (napari opens the file as a Points layer with a property).

    Args:
        path: the CSV file to write.
        coordinates: ``(N, 2)`` or ``(N, 3)`` coordinates, axis-0 first.
        labels: optional ``(N,)`` annotation values written as the property column ``label_column``.

    Raises:
        ValueError: coordinates not ``(N, 2)`` or ``(N, 3)``, or labels of another length.
    """
    coordinates = np.asarray(coordinates, dtype=np.float64)
    if coordinates.ndim != 2 or coordinates.shape[1] not in (2, 3):
        raise ValueError(f"coordinates must have shape (N, 2) or (N, 3), found {coordinates.shape}.")
    if labels is not None and len(labels) != len(coordinates):
        raise ValueError(f"expected one label per point ({len(coordinates)}), found {len(labels)}.")
    header = ["index", *(f"axis-{i}" for i in range(coordinates.shape[1]))]
    header += [label_column] if labels is not None else []
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for index, point in enumerate(coordinates):
            extra = [int(labels[index])] if labels is not None else []
            writer.writerow([index, *(repr(float(c)) for c in point), *extra])


def points_to_image(coordinates: np.ndarray, labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The point annotation image: each point's label at its coordinates rounded to the nearest pixel, 0 elsewhere.

    A later point at the same pixel replaces an earlier one.

    Args:
        coordinates: ``(N, ndim)`` coordinates.
        labels: ``(N,)`` annotation values (> 0 object id, -1 background).
        shape: the image's spatial shape.

    Returns:
        int64 array of ``shape``.

    Raises:
        ValueError: coordinates of another dimensionality than ``shape``, or a point outside the image.
    """
    coordinates = np.asarray(coordinates, dtype=np.float64)
    if coordinates.size == 0:
        coordinates = coordinates.reshape(0, len(shape))
    if coordinates.ndim != 2 or coordinates.shape[1] != len(shape):
        raise ValueError(
            f"expected (N, {len(shape)}) coordinates for an image of shape {tuple(shape)}, found {coordinates.shape}."
        )
    pixels = np.rint(coordinates).astype(np.int64)
    outside = ((pixels < 0) | (pixels >= np.asarray(shape))).any(axis=1)
    if bool(outside.any()):
        first = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"point {first} at {coordinates[first].tolist()} lies outside the image of shape {tuple(shape)} "
            f"({int(outside.sum())} point(s) outside)."
        )
    image = np.zeros(shape, dtype=np.int64)
    image[tuple(pixels.T)] = np.asarray(labels, dtype=np.int64)
    return image


def image_to_points(annotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points of a point annotation image (every non-zero pixel), in raster order.

    Returns:
        ``(coordinates, labels)``: float64 ``(N, ndim)`` and int64 ``(N,)``.
    """
    annotation = np.asarray(annotation)
    where = np.argwhere(annotation != 0)
    return where.astype(np.float64), annotation[tuple(where.T)].astype(np.int64)
