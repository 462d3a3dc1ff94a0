"""Clicks and strokes as the annotation of ``spoco-monai train``: what they are read from and how they train.

A click annotation (``--points``) is a napari Points layer saved as CSV (see :mod:`spoco_monai.data.points_csv`) or
a point label image: an object's id (> 0) at each of its clicks, -1 at a background click, 0 elsewhere. A stroke
annotation (``--scribbles``) is a label image of the same kind holding strokes, as a napari Labels layer painted with
a thin brush saves it. CSV files become point label images in the training folder before anything else (the
user's files are never changed); label images are used as they are.

Both train through the bundle's own overlays, with the given annotation in place of the simulated annotator:

- clicks: ``points_model.json`` + ``points.json`` (``train#given_clicks``): every object grows into a mask around
  its clicks (:class:`~spoco_monai.transforms.GrowFromPointsd`), SPOCO's losses train on the masks and a
  localisation channel learns the clicks; the model segments with the ``"points"`` clustering. A click model starts
  from scratch or from a model folder trained from clicks (the shipped models have no localisation channel);
- strokes: ``scribbles.json`` (``train#given_scribbles``): the strokes grow into masks the same way and SPOCO's
  losses train on them, so any model, shipped ones included, can be fine-tuned from strokes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from spoco_monai.data.points_csv import points_to_image, read_points_csv
from spoco_monai.data.volume_io import open_volume, write_volume
from spoco_monai.validation import check_positive

__all__ = ["ANNOTATIONS", "CLICK_CONFIGS", "annotation_overlays", "point_label_images"]

#: what ``--labels``, ``--points`` and ``--scribbles`` give
ANNOTATIONS = ("masks", "points", "scribbles")
#: the overlays a network trained from clicks is defined by (inference) and trained with (training)
CLICK_CONFIGS = {"inference": ["configs/points_model.json"], "training": ["configs/points_model.json", "configs/points.json"]}
_TRAINING_OVERLAYS = {"masks": [], "points": CLICK_CONFIGS["training"], "scribbles": ["configs/scribbles.json"]}
_GIVEN = {"points": "@train#given_clicks", "scribbles": "@train#given_scribbles"}


def annotation_overlays(
    annotation: str, grow_radius: float | None, bundle: Path
) -> tuple[list[str], dict[str, object], float | None]:
    """The training overlays of an annotation, the config entries that make them train on the given annotation, and
    the radius its masks grow to.

    Args:
        annotation: one of :data:`ANNOTATIONS`.
        grow_radius: the largest distance of a grown mask's pixel from its object's clicks or strokes; None keeps
            the overlay's.
        bundle: the bundle directory.

    Returns:
        overlays (relative to the bundle), config entries, and the grow radius (None for masks).

    Raises:
        ValueError: an unknown annotation, a radius that is not positive, or a radius for masks.
    """
    if annotation not in ANNOTATIONS:
        raise ValueError(f"annotation must be one of {ANNOTATIONS}, found {annotation!r}.")
    if annotation == "masks":
        if grow_radius is not None:
            raise ValueError("a grow radius applies to clicks and strokes (--points, --scribbles), not to masks.")
        return [], {}, None
    overlays = list(_TRAINING_OVERLAYS[annotation])
    entries: dict[str, object] = {"train#annotation": _GIVEN[annotation], "training_settings#annotation": annotation}
    if grow_radius is None:
        grow_radius = json.loads((bundle / overlays[-1]).read_text())["grow_radius"]
    entries["grow_radius"] = check_positive("grow_radius", float(grow_radius))
    return overlays, entries, float(grow_radius)


def point_label_images(
    images: Sequence[str | os.PathLike], annotations: Sequence[str | os.PathLike], folder: Path
) -> list[str]:
    """The annotations as label images: every CSV file (a napari Points layer) written as a point label image into
    ``folder``; other files as given.

    Args:
        images: the images, one per annotation (a CSV file's points are placed on its image's spatial grid).
        annotations: CSV files or point/stroke label images.
        folder: where the converted files go (``<name>_points.tif``, written atomically).

    Returns:
        the label image paths, in the order of ``annotations``.

    Raises:
        ValueError: a CSV file that cannot be read or whose points do not fit its image (naming the file).
    """
    paths = []
    for image, annotation in zip(images, annotations):
        annotation = Path(annotation)
        if annotation.suffix.lower() != ".csv":
            paths.append(str(annotation))
            continue
        coordinates, labels = read_points_csv(annotation)
        # the file's axes are the image's spatial axes; an image may carry channels first
        with open_volume(image) as volume:
            shape = tuple(volume.shape)[-coordinates.shape[1] :]
        try:
            points = points_to_image(coordinates, labels, shape)
        except ValueError as error:
            raise ValueError(f"points file {annotation} does not fit the image {image}: {error}") from None
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{annotation.stem}_points.tif"
        write_volume(target, points.astype("int32"), overwrite=True)
        paths.append(str(target))
    return paths
