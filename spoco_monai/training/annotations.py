"""A user's annotated volumes: image/label pairs, checked and summarised before any training starts.

Labels follow the project's convention: id > 0 an annotated object, 0 unlabeled, -1 ignored. A napari Labels
layer saved as TIFF, a PNG label image, an HDF5/zarr dataset (``file.h5:label``) or a NIfTI file all work as
they are.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spoco_monai.data.volume_io import open_volume

__all__ = ["AnnotatedVolume", "summarize_pairs", "describe_volumes"]


@dataclass(frozen=True)
class AnnotatedVolume:
    """What one image/label pair holds.

    Attributes:
        image: the image path (``file.h5:dataset`` for a container).
        label: the label path.
        shape: the image's spatial shape.
        channels: the image's channel count.
        objects: the number of annotated objects (distinct ids > 0).
        annotated_voxels: voxels inside an annotated object.
        ignored_voxels: voxels labeled -1.
        element_size: the image's voxel size when its file records one, else None.
    """

    image: str
    label: str
    shape: tuple[int, ...]
    channels: int
    objects: int
    annotated_voxels: int
    ignored_voxels: int
    element_size: tuple[float, ...] | None

    def as_record(self) -> dict:
        """The JSON-serialisable form kept in a model folder's record."""
        return {
            "image": self.image,
            "label": self.label,
            "shape": list(self.shape),
            "objects": self.objects,
            "annotated_voxels": self.annotated_voxels,
            "ignored_voxels": self.ignored_voxels,
            "element_size": None if self.element_size is None else list(self.element_size),
        }


def summarize_pairs(
    images: Sequence[str | os.PathLike], labels: Sequence[str | os.PathLike], spatial_dims: int | None = None
) -> list[AnnotatedVolume]:
    """Read every label (and every image's header) and summarise the pairs, raising one error for all problems.

    An image may carry channels first, ``(C, *S)``; a label is ``(*S)`` or ``(1, *S)``.

    Args:
        images: image paths.
        labels: label paths, one per image, in the same order.
        spatial_dims: 2 or 3 when the model is fixed; None accepts either (all pairs must agree).

    Returns:
        one :class:`AnnotatedVolume` per pair.

    Raises:
        ValueError: counts differ, a file cannot be read, shapes differ, a label holds non-integer values, ids below
            -1 or no annotated object, or the dimensionality is not the model's; one line per problem, each naming
            the file, what was expected and what was found.
    """
    if len(images) != len(labels):
        raise ValueError(f"expected one label per image, found {len(images)} image(s) and {len(labels)} label(s).")
    if not images:
        raise ValueError("expected at least one image and its label, found none.")
    volumes, problems = [], []
    for image, label in zip(images, labels):
        try:
            volumes.append(_summarize(str(image), str(label), spatial_dims))
        except (ValueError, FileNotFoundError) as error:
            problems.append(str(error))
    dims = {len(volume.shape) for volume in volumes}
    if not problems and len(dims) > 1:
        problems.append(f"the images mix 2D and 3D data: {[volume.shape for volume in volumes]}; train on one kind.")
    if problems:
        raise ValueError("\n".join(problems))
    return volumes


def _summarize(image: str, label: str, spatial_dims: int | None) -> AnnotatedVolume:
    with open_volume(image) as image_volume:
        image_shape, element_size = tuple(image_volume.shape), image_volume.element_size
    with open_volume(label) as label_volume:
        values = np.asarray(label_volume[...])
    spatial = _spatial_shape(image, image_shape, values.shape, spatial_dims)
    if values.shape == (1, *spatial):
        values = values[0]
    if values.shape != spatial:
        raise ValueError(f"{label}: expected a label of the image's spatial shape {spatial}, found {values.shape}.")
    if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        raise ValueError(f"{label}: expected integer object ids (> 0 object, 0 unlabeled, -1 ignored), found fractions.")
    if values.dtype.kind not in "iuf":
        raise ValueError(f"{label}: expected integer object ids, found dtype {values.dtype}.")
    if values.size and values.min() < -1:
        raise ValueError(f"{label}: expected ids >= -1 (-1 = ignored), found {int(values.min())}.")
    ids, counts = np.unique(values, return_counts=True)
    objects = ids > 0
    if not objects.any():
        raise ValueError(f"{label}: expected at least one annotated object (an id > 0), found none.")
    return AnnotatedVolume(
        image=image,
        label=label,
        shape=spatial,
        channels=image_shape[0] if len(image_shape) > len(spatial) else 1,
        objects=int(objects.sum()),
        annotated_voxels=int(counts[objects].sum()),
        ignored_voxels=int(counts[ids == -1].sum()),
        element_size=None if element_size is None else tuple(float(size) for size in element_size)[-len(spatial) :],
    )


def _spatial_shape(
    image: str, image_shape: tuple[int, ...], label_shape: tuple[int, ...], spatial_dims: int | None
) -> tuple[int, ...]:
    """The spatial shape of the image: its shape without a leading channel axis.

    Without ``spatial_dims`` the label tells: a label is (*S) or (1, *S), and no 3D volume is one slice thick.
    """
    dims = spatial_dims or (len(label_shape) - 1 if len(label_shape) == 4 or label_shape[0] == 1 else len(label_shape))
    if len(image_shape) == dims:
        return image_shape
    if len(image_shape) == dims + 1:
        return image_shape[1:]
    hint = f" (a {len(image_shape)}D image needs a {len(image_shape)}D model)" if len(image_shape) in (2, 3) else ""
    raise ValueError(
        f"{image}: expected a {dims}D image, (*S) or (C, *S), to match its label {label_shape}, found shape "
        f"{image_shape}{hint}."
    )


def describe_volumes(volumes: Sequence[AnnotatedVolume]) -> list[str]:
    """One line per volume for the user: shape, annotated objects, ignored voxels, voxel size."""
    lines = []
    for volume in volumes:
        size = "" if volume.element_size is None else f", voxel size {volume.element_size}"
        ignored = f", {volume.ignored_voxels} ignored voxels" if volume.ignored_voxels else ""
        fraction = volume.annotated_voxels / max(1, int(np.prod(volume.shape)))
        lines.append(
            f"{volume.image}: {'x'.join(map(str, volume.shape))} voxels, {volume.objects} annotated object(s) in "
            f"{volume.label} ({fraction:.1%} of the voxels){ignored}{size}"
        )
    return lines
