from __future__ import annotations

from pathlib import Path

import pytest
import torch
from bundle_workflow import workflow

from spoco_monai.data import write_synthetic_dataset
from spoco_monai.engines import latest_checkpoint


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """Two small synthetic volumes (one training, one validation) with a datalist."""
    folder = tmp_path_factory.mktemp("tiny_dataset")
    write_synthetic_dataset(folder, n_volumes=2, shape=(32, 48, 48), seed=3, mean_cell_size=14.0)
    return folder


@pytest.fixture(scope="session")
def trained(tiny_dataset, tmp_path_factory) -> Path:
    """Network weights (``model.pt``, a plain state dict) after a short training on the tiny dataset.

    The learning rate is high so that a few iterations give weights clearly better than random.
    """
    output = tmp_path_factory.mktemp("trained")
    flow = workflow(
        ("train",), dataset_dir=str(tiny_dataset), output_dir=str(output), num_iterations=8, val_interval=8,
        learning_rate=0.01, run_validation=False,
    )
    flow.run()
    checkpoint = torch.load(latest_checkpoint(output / "checkpoints"), weights_only=True)
    torch.save(checkpoint["network"], output / "model.pt")
    return output / "model.pt"
