from __future__ import annotations

from pathlib import Path

import pytest
import torch
from bundle_workflow import workflow

from spoco_monai.data import write_synthetic_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """Two small synthetic volumes (one training, one validation) with a datalist."""
    folder = tmp_path_factory.mktemp("tiny_dataset")
    write_synthetic_dataset(folder, n_volumes=2, shape=(32, 48, 48), seed=3, mean_cell_size=14.0)
    return folder


@pytest.fixture(scope="session")
def trained(tiny_dataset, tmp_path_factory) -> Path:
    """Output folder of a short training on the tiny dataset (high learning rate, so the weights are useful)."""
    output = tmp_path_factory.mktemp("trained")
    flow = workflow(
        ("train",), dataset_dir=str(tiny_dataset), output_dir=str(output), num_iterations=12, val_interval=12,
        learning_rate=0.01,
    )
    flow.run()
    flow.finalize()
    assert (output / "checkpoints" / "model.pt").is_file()
    torch.manual_seed(0)
    return output
