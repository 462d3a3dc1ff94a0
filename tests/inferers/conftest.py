"""Fixtures of the inference tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_fakes import NUM_OBJECTS, VOLUME_SHAPE, label_image, voronoi_labels


@pytest.fixture(scope="module")
def labels_3d() -> np.ndarray:
    return voronoi_labels(VOLUME_SHAPE, NUM_OBJECTS, seed=0)


@pytest.fixture(scope="module")
def image_3d(labels_3d: np.ndarray) -> np.ndarray:
    return label_image(labels_3d)


@pytest.fixture(autouse=True)
def single_thread():
    """One torch thread: these tensors are tiny, and thread hand-offs cost more than they save on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
