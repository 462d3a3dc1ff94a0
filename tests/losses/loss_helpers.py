"""Helpers of the loss tests: hand-made inputs and generator reseeding."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def seeded(module: nn.Module, fn: Callable[..., torch.Tensor], seed: int = 0) -> Callable[..., torch.Tensor]:
    """Wrap ``fn`` so that every call starts from the same generator states (for gradcheck's repeated calls)."""

    def call(*args: torch.Tensor) -> torch.Tensor:
        for sub_module in module.modules():
            generator = getattr(sub_module, "generator", None)
            if isinstance(generator, torch.Generator):
                generator.manual_seed(seed)
        return fn(*args)

    return call


def kernel_rate(delta_var: float = 0.5, threshold: float = 0.9) -> float:
    """1 / (2 sigma^2) of the soft-mask kernel, written out independently of the package."""
    sigma_sq = -(delta_var**2) / (2.0 * math.log(threshold))
    return 1.0 / (2.0 * sigma_sq)


def line_image(points: list[tuple[float, float]], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(1, 2, 1, P) embeddings of a 1 x P image from 2-D points."""
    return torch.tensor(points, dtype=dtype).T.reshape(1, 2, 1, len(points))


def line_target(ids: list[int]) -> torch.Tensor:
    """(1, 1, 1, P) target of a 1 x P image."""
    return torch.tensor(ids, dtype=torch.int64).reshape(1, 1, 1, len(ids))
