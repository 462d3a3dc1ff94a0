"""Shared fixtures of the loss tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def random_batch() -> dict[str, torch.Tensor]:
    """A small float64 2D batch with objects, unlabeled and ignored pixels, and a teacher."""
    generator = torch.Generator().manual_seed(0)
    embeddings = 1.5 * torch.randn(2, 2, 3, 4, generator=generator, dtype=torch.float64)
    target = torch.randint(-1, 4, (2, 1, 3, 4), generator=generator)
    teacher = torch.randn(2, 2, 3, 4, generator=generator, dtype=torch.float64)
    return {"embeddings": embeddings, "target": target, "teacher": teacher}
