"""Seeded synthetic membrane-stained tissue with dense instance ground truth.

The sample the bundle trains its default model on and the demo segments. Cells are the Voronoi cells of
jittered lattice seeds measured in physical units (the z voxel is ``anisotropy`` times coarser than y, x).
The membrane signal falls off with the distance to the Voronoi face between the two nearest seeds,
(d2^2 - d1^2) / (2 |s1 - s2|), which one k=2 nearest-neighbour query gives for every voxel at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from bioimage_cpp.segmentation import relabel_sequential
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from spoco_monai.data.atomic import write_atomically
from spoco_monai.data.datalist import load_datalist
from spoco_monai.data.volume_io import write_volume
from spoco_monai.validation import check_non_negative, check_positive

__all__ = ["make_synthetic_volume", "write_synthetic_dataset", "SYNTHETIC_FORMATS"]

SYNTHETIC_FORMATS = ("nii.gz", "tif", "h5")

# Seeds are displaced by up to this fraction of the lattice step: irregular cells, none degenerate.
_SEED_JITTER = 0.35
# Cytoplasm intensity range and membrane brightness range (per cell), relative to a membrane peak of 1.
_INTERIOR_RANGE = (0.1, 0.3)
_MEMBRANE_GAIN_RANGE = (0.6, 1.0)


def _validate_shape(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape must be 2 or 3 positive sizes (Y, X) or (Z, Y, X), got {shape}")
    return shape


def make_synthetic_volume(
    shape: Sequence[int] = (96, 192, 192),
    seed: int = 0,
    mean_cell_size: float = 24.0,
    anisotropy: float = 2.0,
    noise: float = 0.08,
    blur: float = 1.0,
    membrane_width: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Make a synthetic membrane-stained image and its dense cell labels.

    Every voxel belongs to a cell (no background). Cells are brighter on their borders (membrane) than
    inside, the membrane and cytoplasm intensities vary from cell to cell, and the image is blurred by
    an anisotropic Gaussian point spread function and corrupted by Gaussian noise.

    Args:
        shape: spatial shape, (Y, X) for 2D or (Z, Y, X) for 3D.
        seed: seed of every random choice; the same seed gives the same arrays.
        mean_cell_size: mean cell diameter in in-plane (y, x) voxels (lattice step of the cell seeds).
        anisotropy: z voxel size divided by the y, x voxel size (3D only; ignored in 2D). With 2.0 a cell
            spans half as many voxels along z as along y and x.
        noise: standard deviation of the additive Gaussian noise (membrane peak intensity is about 1).
        blur: standard deviation of the Gaussian point spread function, in in-plane voxels (physical units,
            so fewer voxels along a coarser z axis).
        membrane_width: standard deviation of the membrane intensity profile, in in-plane voxels.

    Returns:
        ``(image, labels)``: image (1, *shape) float32; labels (1, *shape) int32 with ids 1..N, consecutive.

    Raises:
        ValueError: when ``shape`` is not 2 or 3 positive sizes or a parameter is out of range.
    """
    shape = _validate_shape(shape)
    for name, value in (("mean_cell_size", mean_cell_size), ("anisotropy", anisotropy),
                        ("membrane_width", membrane_width)):
        check_positive(name, value)
    for name, value in (("noise", noise), ("blur", blur)):
        check_non_negative(name, value)

    rng = np.random.default_rng(seed)
    spacing = np.array((anisotropy, 1.0, 1.0)[3 - len(shape):], dtype=np.float64)
    extent = np.array(shape) * spacing
    # The lattice reaches half a step beyond the volume so that cells are cut by the border as in a
    # real field of view instead of ending on straight seed-lattice walls.
    axes = [np.arange(-mean_cell_size / 2, e + mean_cell_size, mean_cell_size) for e in extent]
    seeds = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(shape))
    seeds += rng.uniform(-_SEED_JITTER, _SEED_JITTER, seeds.shape) * mean_cell_size
    interior = rng.uniform(*_INTERIOR_RANGE, len(seeds))
    membrane_gain = rng.uniform(*_MEMBRANE_GAIN_RANGE, len(seeds))

    coordinates = np.indices(shape, dtype=np.float32).reshape(len(shape), -1).T * spacing.astype(np.float32)
    distances, nearest = cKDTree(seeds).query(coordinates, k=2, workers=-1)
    first, second = nearest[:, 0], nearest[:, 1]
    seed_gap = np.linalg.norm(seeds[first] - seeds[second], axis=1)
    face_distance = (distances[:, 1] ** 2 - distances[:, 0] ** 2) / (2.0 * seed_gap)

    membrane = np.exp(-(face_distance**2) / (2.0 * membrane_width**2))
    image = interior[first] + 0.5 * (membrane_gain[first] + membrane_gain[second]) * membrane
    image = gaussian_filter(image.reshape(shape).astype(np.float32), sigma=blur / spacing)
    image += rng.normal(0.0, noise, shape).astype(np.float32)

    labels = relabel_sequential((first + 1).reshape(shape).astype(np.int32))[0]
    return image[None].astype(np.float32), labels[None].astype(np.int32)


def write_synthetic_dataset(
    folder: str | os.PathLike,
    n_volumes: int = 4,
    shape: Sequence[int] = (96, 192, 192),
    seed: int = 0,
    format: str = "nii.gz",
    validation_fraction: float = 0.25,
    **volume_kwargs: float,
) -> dict[str, list[dict[str, str]]]:
    """Write synthetic image/label pairs and their MONAI datalist ``folder/datalist.json``.

    Layout: ``folder/images/synthetic_000.<ext>`` and ``folder/labels/synthetic_000.<ext>`` (the folder
    convention of :func:`load_datalist`); HDF5 images hold the dataset ``raw`` and labels ``label``,
    listed in the datalist as ``"images/synthetic_000.h5:raw"`` and ``"labels/synthetic_000.h5:label"``.
    Arrays are stored without a channel axis (float32 image, int32 labels); existing files are replaced.
    The last ``round(n_volumes * validation_fraction)`` volumes (at least one when ``n_volumes >= 2`` and
    the fraction is > 0) form the validation split. The JSON holds paths relative to ``folder``. Every file
    is written atomically (to a temporary name, then renamed).

    Args:
        folder: output folder, created if needed.
        n_volumes: number of volumes (>= 1).
        shape: spatial shape of each volume, (Y, X) or (Z, Y, X).
        seed: seed of the whole dataset; volume i uses a seed derived from (seed, i).
        format: one of ``SYNTHETIC_FORMATS``.
        validation_fraction: fraction of the volumes in the validation split, in [0, 1).
        volume_kwargs: further arguments of :func:`make_synthetic_volume`.

    Returns:
        ``{"training": [...], "validation": [...]}`` with items ``{"image": path, "label": path}`` holding
        absolute paths, as :func:`load_datalist` reads them back from the JSON file.

    Raises:
        ValueError: for an unknown format, ``n_volumes < 1`` or a fraction outside [0, 1).
    """
    if format not in SYNTHETIC_FORMATS:
        raise ValueError(f"format must be one of {SYNTHETIC_FORMATS}, got {format!r}")
    if n_volumes < 1:
        raise ValueError(f"n_volumes must be >= 1, got {n_volumes}")
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    shape = _validate_shape(shape)
    n_validation = int(round(n_volumes * validation_fraction))
    if validation_fraction > 0 and n_volumes >= 2:
        n_validation = min(max(n_validation, 1), n_volumes - 1)

    root = Path(folder)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(n_volumes):
        volume_seed = int(np.random.SeedSequence((seed, index)).generate_state(1)[0])
        image, labels = make_synthetic_volume(shape, seed=volume_seed, **volume_kwargs)
        item = {}
        volumes = (("image", "images", "raw", image[0]), ("label", "labels", "label", labels[0]))
        for key, subfolder, dataset, array in volumes:
            relative = f"{subfolder}/synthetic_{index:03d}.{format}" + (f":{dataset}" if format == "h5" else "")
            write_volume(root / relative, array, overwrite=True)
            item[key] = relative
        items.append(item)

    split = n_volumes - n_validation
    datalist_path = root / "datalist.json"
    with write_atomically(datalist_path) as temporary:
        temporary.write_text(json.dumps({"training": items[:split], "validation": items[split:]}, indent=2))
    return load_datalist(datalist_path)
