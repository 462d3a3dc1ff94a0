"""Synthetic embedding maps with known instances, for testing and benchmarking clustering."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def make_synthetic_embeddings(
    shape: Sequence[int],
    n_objects: int,
    embedding_dim: int = 16,
    min_separation: float = 4.5,
    noise_std: float = 0.05,
    outlier_fraction: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-constant embeddings on a Voronoi partition, plus noise and boundary outliers.

    The objects are the Voronoi cells of ``n_objects`` random sites, so they tile the whole array like
    dense tissue. Each object gets a random centre in embedding space, at least ``min_separation`` away
    from every other centre (``> 2 delta_d`` makes the objects separable by the push term's margin).

    Args:
        shape: spatial shape ``S`` (2D or 3D).
        n_objects: number of objects (Voronoi cells), at least 1.
        embedding_dim: ``E``, the number of embedding channels.
        min_separation: minimum distance between object centres in embedding space.
        noise_std: expected norm of the per-pixel Gaussian noise (each channel gets
            ``noise_std / sqrt(E)``), e.g. ``delta_v / 2`` for realistic predictions.
        outlier_fraction: fraction of the boundary pixels whose embedding is replaced by the midpoint of
            their own centre and a neighbour's centre, mimicking blurred predictions at object borders.
        seed: seed of every random choice.

    Returns:
        ``(embeddings, labels)``: float32 ``(E, *S)`` embeddings and int64 ``S`` labels in ``1..n_objects``.

    Raises:
        ValueError: if the shape is not 2D/3D or a parameter is out of range.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape must be 2D or 3D with positive sizes, got {shape}.")
    if not 1 <= n_objects <= int(np.prod(shape)):
        raise ValueError(f"n_objects must be in [1, {int(np.prod(shape))}], got {n_objects}.")
    if embedding_dim < 1 or min_separation < 0 or noise_std < 0 or not 0 <= outlier_fraction <= 1:
        raise ValueError(
            "expected embedding_dim >= 1, min_separation >= 0, noise_std >= 0 and outlier_fraction in [0, 1], got "
            f"{embedding_dim}, {min_separation}, {noise_std}, {outlier_fraction}."
        )
    rng = np.random.default_rng(seed)
    labels = _voronoi_labels(shape, n_objects, rng)
    centres = _separated_centres(n_objects, embedding_dim, min_separation, rng)
    embeddings = np.moveaxis(centres[labels - 1], -1, 0)
    if outlier_fraction > 0:
        _blur_boundaries(embeddings, labels, centres, outlier_fraction, rng)
    embeddings += rng.normal(scale=noise_std / np.sqrt(embedding_dim), size=embeddings.shape).astype(np.float32)
    return embeddings, labels


def _voronoi_labels(shape: tuple[int, ...], n_objects: int, rng: np.random.Generator) -> np.ndarray:
    flat_sites = rng.choice(int(np.prod(shape)), size=n_objects, replace=False)
    sites = np.zeros(shape, dtype=np.int64)
    sites.flat[flat_sites] = np.arange(1, n_objects + 1)
    # the Euclidean distance transform's nearest-site indices give the Voronoi partition in one pass
    nearest = ndimage.distance_transform_edt(sites == 0, return_distances=False, return_indices=True)
    return sites[tuple(nearest)]


def _separated_centres(n: int, dim: int, min_separation: float, rng: np.random.Generator) -> np.ndarray:
    # rejection sampling inside a ball large enough that n points of this separation fit comfortably;
    # the loop is bounded by n accepted points times a fixed number of attempts each
    radius = max(min_separation * n ** (1.0 / dim) * 1.5, min_separation)
    centres: list[np.ndarray] = []
    attempts = 0
    while len(centres) < n:
        attempts += 1
        if attempts > 1000 * n:
            raise ValueError(f"could not place {n} centres {min_separation} apart in {dim} dimensions.")
        candidate = rng.normal(size=dim)
        candidate *= radius * rng.uniform() ** (1.0 / dim) / np.linalg.norm(candidate)
        if all(np.linalg.norm(candidate - c) >= min_separation for c in centres):
            centres.append(candidate)
    return np.stack(centres).astype(np.float32)


def _blur_boundaries(
    embeddings: np.ndarray, labels: np.ndarray, centres: np.ndarray, fraction: float, rng: np.random.Generator
) -> None:
    neighbour = labels.copy()
    for axis in range(labels.ndim):
        here = [slice(None)] * labels.ndim
        before = [slice(None)] * labels.ndim
        here[axis], before[axis] = slice(1, None), slice(None, -1)
        here_view = neighbour[tuple(here)]
        np.copyto(here_view, labels[tuple(before)], where=here_view == labels[tuple(here)])
    boundary = np.flatnonzero(neighbour != labels)
    chosen = boundary[rng.uniform(size=boundary.size) < fraction]
    own = centres[labels.flat[chosen] - 1]
    other = centres[neighbour.flat[chosen] - 1]
    coords = np.unravel_index(chosen, labels.shape)
    embeddings[(slice(None), *coords)] = ((own + other) / 2).T
