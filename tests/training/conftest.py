"""Fixtures of the training tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch


class Lookup(torch.nn.Module):
    """Embeds a pixel whose image value is object id ``k`` at ``table[k]``."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x[:, 0].long()].movedim(-1, 1)


@pytest.fixture
def lookup() -> Callable[[torch.Tensor], torch.nn.Module]:
    """``lookup(table)``: a network that embeds a pixel whose image value is object id ``k`` at ``table[k]``, so an
    image of object ids segments the way the table places the objects."""
    return Lookup
