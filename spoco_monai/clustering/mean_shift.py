"""Mean-shift clustering of pixel embeddings in torch (runs on the input's device)."""

from __future__ import annotations

import numpy as np
import torch
from bioimage_cpp.segmentation import relabel_sequential

from spoco_monai.validation import check_positive

from .background import drop_background_segment
from .inputs import check_background_embedding, check_embeddings, check_mask
from .points import MAX_BLOCK_ELEMENTS, foreground_points, labels_from_points, nearest_centre

KERNELS = ("flat", "gaussian")
# seeding rounds: later rounds only seed points no mode covers yet, so small objects are not missed
MAX_SEEDING_ROUNDS = 5
# a seed has converged when it moves less than this fraction of the bandwidth
CONVERGENCE_TOLERANCE = 1e-3


def mean_shift_clustering(
    embeddings: np.ndarray | torch.Tensor,
    bandwidth: float = 0.5,
    kernel: str = "flat",
    max_iter: int = 100,
    n_seeds: int = 500,
    max_samples: int | None = 10000,
    mask: np.ndarray | torch.Tensor | None = None,
    background_embedding: np.ndarray | torch.Tensor | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Instances by mean-shift (Comaniciu and Meer 2002) with bandwidth ``delta_v``.

    Seeds (``n_seeds`` random reference points) are shifted to the kernel-weighted mean of the reference
    points (a seeded subsample of at most ``max_samples`` pixels) until they move less than
    ``1e-3 * bandwidth``. Converged modes closer than ``bandwidth`` are merged, keeping the mode with
    most reference points within ``bandwidth`` (as scikit-learn does). Seeding repeats, on reference
    points that are still farther than ``bandwidth`` from every mode, for up to 5 rounds. Finally every
    pixel is assigned to its nearest mode. Distances are computed in blocks to bound memory.

    Args:
        embeddings: ``(E, *S)`` float array or tensor, 2D or 3D spatial; runs on the tensor's device.
        bandwidth: kernel radius (flat) or standard deviation (Gaussian) and mode merging distance.
        kernel: ``"flat"`` or ``"gaussian"``.
        max_iter: maximum number of shifts per seed.
        n_seeds: seeds per seeding round.
        max_samples: size of the reference subsample, or None for all pixels.
        mask: optional ``S`` boolean foreground mask; other pixels are 0.
        background_embedding: optional ``(E,)`` background reference; the closest segment is set to 0
            (:func:`drop_background_segment`). Off by default.
        seed: seed of the subsample and of the seeds.

    Returns:
        int64 labels of shape ``S``, consecutive from 1, 0 outside ``mask``.

    Raises:
        TypeError, ValueError: for invalid embeddings, mask or parameters.
    """
    check_embeddings(embeddings)
    check_positive("bandwidth", bandwidth)
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}.")
    check_positive("max_iter", max_iter)
    check_positive("n_seeds", n_seeds)
    if max_samples is not None:
        check_positive("max_samples", max_samples)
    mask = check_mask(mask, embeddings.shape[1:])
    check_background_embedding(background_embedding, embeddings.shape[0])
    points, flat_index = foreground_points(embeddings, mask)
    labels = np.zeros(tuple(embeddings.shape[1:]), dtype=np.int64)
    if points.shape[0] == 0:
        return labels
    generator = torch.Generator().manual_seed(seed)
    reference = points[torch.randperm(points.shape[0], generator=generator)[:max_samples].to(points.device)]
    modes = find_modes(reference, bandwidth, kernel, max_iter, n_seeds, generator)
    labels = labels_from_points(nearest_centre(points, modes)[0] + 1, flat_index, labels.shape)
    labels = relabel_sequential(labels)[0]
    if background_embedding is not None:
        labels = drop_background_segment(labels, embeddings, background_embedding)
    return labels


def find_modes(
    reference: torch.Tensor, bandwidth: float, kernel: str, max_iter: int, n_seeds: int, generator: torch.Generator
) -> torch.Tensor:
    """Distinct modes of the density of ``reference`` (``(N, E)``), as a ``(K, E)`` tensor, ``K >= 1``."""
    modes = reference.new_zeros((0, reference.shape[1]))
    support = reference.new_zeros(0)
    for _ in range(MAX_SEEDING_ROUNDS):
        uncovered = torch.arange(reference.shape[0], device=reference.device)
        if modes.shape[0] > 0:
            uncovered = uncovered[nearest_centre(reference, modes)[1] > bandwidth]
        if uncovered.numel() == 0:
            break
        choice = torch.randperm(uncovered.numel(), generator=generator)[:n_seeds].to(reference.device)
        shifted, shifted_support = _shift_seeds(reference[uncovered[choice]], reference, bandwidth, kernel, max_iter)
        modes, support = _merge_modes(torch.cat([modes, shifted]), torch.cat([support, shifted_support]), bandwidth)
    return modes


def _shift_seeds(
    seeds: torch.Tensor, reference: torch.Tensor, bandwidth: float, kernel: str, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift every seed to convergence; returns the modes and their support (reference points within bandwidth)."""
    block = max(1, MAX_BLOCK_ELEMENTS // reference.shape[0])
    seeds = seeds.clone()
    support = seeds.new_zeros(seeds.shape[0])
    active = torch.arange(seeds.shape[0], device=seeds.device)
    for _ in range(max_iter):
        still_active = []
        for start in range(0, active.numel(), block):
            rows = active[start : start + block]
            squared = torch.cdist(seeds[rows], reference).square_()
            within = squared <= bandwidth**2
            weights = within.float() if kernel == "flat" else torch.exp(-squared / (2 * bandwidth**2))
            # flat weights never sum to 0 (the mean of points within the bandwidth has one of them within
            # it), but far Gaussian weights can underflow
            total = weights.sum(dim=1, keepdim=True).clamp(min=torch.finfo(weights.dtype).tiny)
            shifted = weights @ reference / total
            moved = torch.linalg.vector_norm(shifted - seeds[rows], dim=1)
            seeds[rows] = shifted
            support[rows] = within.sum(dim=1).float()
            still_active.append(rows[moved > CONVERGENCE_TOLERANCE * bandwidth])
        active = torch.cat(still_active)
        if active.numel() == 0:
            break
    return seeds, support


def _merge_modes(modes: torch.Tensor, support: torch.Tensor, bandwidth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy non-maximum suppression: keep modes by decreasing support, drop those within bandwidth of a kept one."""
    order = torch.argsort(support, descending=True, stable=True)
    modes, support = modes[order], support[order]
    near = (torch.cdist(modes, modes) < bandwidth).cpu().numpy()
    suppressed = np.zeros(modes.shape[0], dtype=bool)
    keep = []
    # sequential by nature (a kept mode suppresses later ones); bounded by the number of seeds
    for index in range(modes.shape[0]):
        if not suppressed[index]:
            keep.append(index)
            suppressed |= near[index]
    keep = torch.as_tensor(keep, device=modes.device)
    return modes[keep], support[keep]
