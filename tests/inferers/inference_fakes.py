"""Generated volumes and a deterministic stand-in network for the inference tests."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

# offsets 1, 3, 9 along each axis (first the three attractive ones, as default_offsets), short enough
# for 16-voxel windows
OFFSETS_3D = [tuple(-step if axis == a else 0 for a in range(3)) for step in (1, 3, 9) for axis in range(3)]
VOLUME_SHAPE = (32, 64, 64)
NUM_OBJECTS = 20


def voronoi_labels(shape: tuple[int, ...], num_objects: int, seed: int) -> np.ndarray:
    """Dense labels 1..num_objects: every voxel belongs to its nearest of ``num_objects`` random seeds."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (num_objects, len(shape))) * np.array(shape)
    grid = np.stack(np.meshgrid(*(np.arange(s) for s in shape), indexing="ij"), axis=-1).reshape(-1, len(shape))
    return (cKDTree(centres).query(grid)[1] + 1).reshape(shape).astype(np.int64)


def label_image(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """``(2, *S)`` float32 input: the label id, and Gaussian noise the network turns into embedding jitter."""
    noise = np.random.default_rng(seed).normal(size=labels.shape)
    return np.stack([labels, noise]).astype(np.float32)


class LabelLookupNetwork(nn.Module):
    """Maps ``(B, 2, *S)`` label images to ``(B, E, *S)`` embeddings: one fixed random vector per object.

    Different objects lie far apart (>> 2 delta_d); voxels of one object coincide, or lie within a few
    ``noise_scale`` of each other (noise makes the Mutex Watershed slower: keep it for the seam tests).
    ``shift_scale`` adds a different random constant to the embeddings of every forward call (every
    window with ``sw_batch_size=1``), the embedding drift that affinities must ignore. The forward call
    after ``fail_after`` calls raises, to interrupt a run.
    """

    def __init__(
        self,
        num_objects: int,
        embedding_dim: int = 8,
        noise_scale: float = 0.0,
        shift_scale: float = 0.0,
        fail_after: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("table", 10.0 * torch.randn(num_objects + 1, embedding_dim, generator=generator))
        self.noise_scale = noise_scale
        self.shift_scale = shift_scale
        self.fail_after = fail_after
        self.shift_generator = torch.Generator().manual_seed(seed + 1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("interrupted")
        embeddings = torch.movedim(self.table[x[:, 0].round().long()], -1, 1).clone()
        if x.shape[1] > 1:
            embeddings[:, 0] += self.noise_scale * x[:, 1]
        if self.shift_scale:
            shift = self.shift_scale * torch.randn(self.table.shape[1], generator=self.shift_generator)
            embeddings += shift.view(1, -1, *(1,) * (x.ndim - 2))
        return embeddings
