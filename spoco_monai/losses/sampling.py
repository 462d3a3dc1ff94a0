"""Seeded random choices of anchor pixels and object subsets, vectorised over objects and samples."""

from __future__ import annotations

import torch

__all__ = ["random_priorities", "pick_per_group", "random_subset"]


def random_priorities(batch: int, num_pixels: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Distinct random priorities for the pixels of each sample, drawn on the generator's device (CPU).

    Choosing the candidate of highest priority is a uniform random choice among the candidates, for any
    candidate set; one draw therefore serves many choices.

    Returns:
        (B, N) int64; each row a random permutation of 0..N-1, on ``device``.
    """
    rows = [torch.randperm(num_pixels, generator=generator) for _ in range(batch)]
    return torch.stack(rows).to(device)


def pick_per_group(
    groups: torch.Tensor, candidates: torch.Tensor, num_groups: int, priorities: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose one random candidate pixel in each group of each sample.

    Args:
        groups: (B, N) int64 group of each pixel in [0, num_groups]; num_groups marks pixels in no group.
        candidates: (B, N) bool, pixels that may be chosen.
        num_groups: G.
        priorities: (B, N) int64 from :func:`random_priorities`.

    Returns:
        (B, G) int64 chosen pixel indices (0 where nothing was found) and (B, G) bool, whether a candidate existed.
    """
    keys = torch.where(candidates, priorities, torch.full_like(priorities, -1))
    best = torch.full((groups.shape[0], num_groups + 1), -1, dtype=torch.int64, device=groups.device)
    best = best.scatter_reduce(1, groups, keys, reduce="amax")[:, :num_groups]
    found = best >= 0
    pixel_index = torch.arange(priorities.shape[1], device=priorities.device).expand_as(priorities)
    pixel_of_priority = torch.empty_like(priorities).scatter_(1, priorities, pixel_index)
    return pixel_of_priority.gather(1, best.clamp_min(0)), found


def random_subset(present: torch.Tensor, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose up to ``size`` present slots per sample uniformly at random.

    Args:
        present: (B, K) bool.
        size: number of slots to keep, <= K.
        generator: CPU generator.

    Returns:
        (B, size) int64 slot indices and (B, size) bool, whether the chosen slot is present.
    """
    keys = torch.rand(present.shape, generator=generator, dtype=torch.float64).to(present.device)
    keys = torch.where(present, keys, torch.full_like(keys, -1.0))
    chosen = keys.topk(size, dim=1).indices
    return chosen, present.gather(1, chosen)
