"""Clicks, strokes and boxes as the annotation of ``spoco-monai train``: what they are read from and how they train.

A click annotation (``--points``) is a napari Points layer saved as CSV (see :mod:`spoco_monai.data.points_csv`) or
a point label image: an object's id (> 0) at each of its clicks, -1 at a background click, 0 elsewhere. A stroke
annotation (``--scribbles``) is a label image of the same kind holding strokes, as a napari Labels layer painted with
a thin brush saves it. A box annotation (``--boxes``) is a CSV file of boxes (:mod:`spoco_monai.data.boxes_csv`).
CSV files become label images in the training folder before anything else (the user's files are never changed);
label images are used as they are.

- clicks train through ``points_model.json`` + ``points.json`` + ``points_wise.json`` (``train#given_clicks``):
  every object grows into a mask around its clicks (:class:`~spoco_monai.transforms.GrowFromPointsd`), WISE's
  anchor similarity loss (:class:`~spoco_monai.losses.AnchorSimilarityLoss`) trains the embeddings on the masks, the
  better of it and SPOCO's terms for clicks on DSB2018 (``bench/RESULTS.md``), and a localisation channel learns the
  clicks; the model segments with the ``"points"`` clustering. A click model starts from scratch or from a model
  folder trained from clicks (the shipped models have no localisation channel);
- strokes train through ``scribbles.json`` (``train#given_scribbles``): the strokes grow into masks the same way and
  SPOCO's losses train on them, so any model, shipped ones included, can be fine-tuned from strokes;
- boxes grow into masks inside them once, before training (:class:`~spoco_monai.transforms.GrowFromBoxes`, as
  ``boxes.json`` does for simulated boxes), written beside the converted files for the user to check, and train
  as masks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spoco_monai.data.boxes_csv import read_boxes_csv
from spoco_monai.data.points_csv import points_to_image, read_points_csv
from spoco_monai.data.volume_io import open_volume, write_volume
from spoco_monai.transforms.box_masks import GrowFromBoxes
from spoco_monai.validation import check_positive

__all__ = ["ANNOTATIONS", "CLICK_CONFIGS", "annotation_label_images", "annotation_overlays"]

#: what ``--labels``, ``--points``, ``--scribbles`` and ``--boxes`` give
ANNOTATIONS = ("masks", "points", "scribbles", "boxes")
#: the overlays a network trained from clicks is defined by (inference) and trained with (training)
CLICK_CONFIGS = {
    "inference": ["configs/points_model.json"],
    "training": ["configs/points_model.json", "configs/points.json", "configs/points_wise.json"],
}
_TRAINING_OVERLAYS = {"points": CLICK_CONFIGS["training"], "scribbles": ["configs/scribbles.json"]}
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
        overlays (relative to the bundle), config entries, and the grow radius (None for masks and boxes).

    Raises:
        ValueError: an unknown annotation, a radius that is not positive, or a radius for masks or boxes.
    """
    if annotation not in ANNOTATIONS:
        raise ValueError(f"annotation must be one of {ANNOTATIONS}, found {annotation!r}.")
    if annotation in ("masks", "boxes"):
        if grow_radius is not None:
            raise ValueError(f"a grow radius applies to clicks and strokes (--points, --scribbles), not to {annotation}.")
        return [], {} if annotation == "masks" else {"training_settings#annotation": annotation}, None
    overlays = list(_TRAINING_OVERLAYS[annotation])
    entries: dict[str, object] = {"train#annotation": _GIVEN[annotation], "training_settings#annotation": annotation}
    if grow_radius is None:
        configs = [json.loads((bundle / overlay).read_text()) for overlay in overlays]
        grow_radius = next(config["grow_radius"] for config in configs if "grow_radius" in config)
    entries["grow_radius"] = check_positive("grow_radius", float(grow_radius))
    return overlays, entries, float(grow_radius)


def annotation_label_images(
    annotation: str, images: Sequence[str | os.PathLike], annotations: Sequence[str | os.PathLike], folder: Path
) -> list[str]:
    """The annotations as the label images the training reads, converted into ``folder`` where needed.

    Points in CSV files (napari Points layers) become point label images (``<name>_points.tif``); boxes become the
    masks grown inside them (``<name>_masks.tif``); label images are used as given. Files are written atomically.

    Args:
        annotation: one of :data:`ANNOTATIONS`.
        images: the images, one per annotation (their spatial grid places the points; boxes grow over them).
        annotations: label images, points CSV files or boxes CSV files.
        folder: where converted files go.

    Returns:
        the label image paths, in the order of ``annotations``.

    Raises:
        ValueError: a CSV file that cannot be read or does not fit its image (naming the file), or boxes in a file
            that is no CSV file.
    """
    paths = []
    for image, path in zip(images, annotations):
        path = Path(path)
        if path.suffix.lower() != ".csv":
            if annotation == "boxes":
                raise ValueError(f"boxes file {path}: expected a CSV file (label,start-0,...,stop-0,...).")
            paths.append(str(path))
            continue
        with open_volume(image) as volume:
            if annotation == "boxes":
                pixels = np.asarray(volume[...], dtype=np.float32)
                converted, name = _grown_boxes(pixels, read_boxes_csv(path), path, image), f"{path.stem}_masks.tif"
            else:
                converted, name = _point_image(tuple(volume.shape), path, image), f"{path.stem}_points.tif"
        folder.mkdir(parents=True, exist_ok=True)
        write_volume(folder / name, converted.astype(np.int32), overwrite=True)
        paths.append(str(folder / name))
    return paths


def _point_image(image_shape: tuple[int, ...], path: Path, image: str | os.PathLike) -> np.ndarray:
    coordinates, labels = read_points_csv(path)
    # the file's axes are the image's spatial axes; an image may carry channels first
    try:
        return points_to_image(coordinates, labels, image_shape[-coordinates.shape[1] :])
    except ValueError as error:
        raise ValueError(f"points file {path} does not fit the image {image}: {error}") from None


def _grown_boxes(pixels: np.ndarray, boxes: np.ndarray, path: Path, image: str | os.PathLike) -> np.ndarray:
    ndim = (boxes.shape[1] - 1) // 2
    channels_first = pixels if pixels.ndim > ndim else pixels[None]
    try:
        return GrowFromBoxes()(channels_first, boxes)[0]
    except ValueError as error:
        raise ValueError(f"boxes file {path} does not fit the image {image}: {error}") from None
