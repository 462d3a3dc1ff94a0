"""Helpers of the loss tests: hand-made inputs and generator reseeding."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


# The single-instance line (1 x 4 image, 2-D embeddings). Object 1: pixels (0,0), (2,0), mean (1,0); no pixel lies
# within delta_v = 0.5 of it, so the mean is the anchor. Object 2: the single pixel (5,0), its own anchor. Pixel 4,
# (5,3), is unlabeled.
LINE_POINTS = [(0.0, 0.0), (2.0, 0.0), (5.0, 0.0), (5.0, 3.0)]
LINE_IDS = [1, 1, 2, 0]
# Squared distances of the four pixels to each anchor.
LINE_SQUARED_TO_ANCHOR_1 = [1.0, 1.0, 16.0, 25.0]
LINE_SQUARED_TO_ANCHOR_2 = [25.0, 9.0, 0.0, 9.0]


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
