from __future__ import annotations

import numpy as np
import pytest

from spoco_monai.clustering import make_synthetic_embeddings

# small synthetic maps: objects are Voronoi cells with centres >= 4.5 > 2 delta_d apart, noise norm 0.1
SHAPES = {"2d": (64, 64), "3d": (16, 32, 32)}
N_OBJECTS = 6


@pytest.fixture(params=sorted(SHAPES))
def clean_embeddings(request) -> tuple[np.ndarray, np.ndarray]:
    return make_synthetic_embeddings(SHAPES[request.param], N_OBJECTS, noise_std=0.1, seed=3)


@pytest.fixture
def clean_embeddings_2d() -> tuple[np.ndarray, np.ndarray]:
    return make_synthetic_embeddings(SHAPES["2d"], N_OBJECTS, noise_std=0.1, seed=3)
