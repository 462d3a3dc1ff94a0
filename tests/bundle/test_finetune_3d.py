"""Fine-tuning the shipped 3D membrane model on a user's sparse labels: the documented command, a few iterations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from bundle_workflow import CONFIGS, config
from monai.bundle import ConfigWorkflow

from spoco_monai.engines import latest_checkpoint

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lm3d" / "plantseg_ovule_sample.h5"
SOURCE = CONFIGS.parent / "models" / "lm3d_membranes.pt"


def test_finetune_lm3d_membranes_on_ten_percent_of_the_cells(tmp_path):
    if not DATA.is_file():
        pytest.skip(f"real data not found at {DATA} (the shared data folder ../shared/data is absent)")
    output = tmp_path / "finetune"
    # the command of the bundle docs ("Fine-tuning a 3D model"), on a 32x64x64 crop and for 3 iterations
    flow = ConfigWorkflow(
        config_file=config("train", "lm3d_membranes", "finetune"),
        workflow_type=None,
        bundle_root=str(CONFIGS.parent),
        source_checkpoint=str(SOURCE),
        output_dir=str(output),
        sparse_fraction=0.1,
        train_region="$(slice(None), slice(0, 64), slice(0, 64))",
        **{"train#sparse_sampling#manifest_path": str(output / "sparse_annotation.json")},
        num_iterations=3,
        val_interval=3,
        checkpoint_interval=3,
        run_validation=False,
        amp=False,
        device="$torch.device('cpu')",
    )
    flow.initialize()
    source = torch.load(SOURCE, weights_only=True)
    network = flow.parser.get_parsed_content("saved_network")
    # the fine-tuning starts from the shipped weights
    assert all(torch.equal(value, source[name]) for name, value in network.state_dict().items())
    flow.run()

    # 10% of the 28 cells of the crop are annotated: 2.8 rounds to 3 cells
    manifest = json.loads((output / "sparse_annotation.json").read_text())
    (identity,) = manifest
    kept = manifest[identity]
    assert identity.startswith("plantseg_ovule_sample.h5") and len(kept) == 3
    tuned = torch.load(latest_checkpoint(output / "checkpoints"), weights_only=True)["network"]
    assert tuned.keys() == source.keys()
    assert any(not torch.equal(tuned[name], source[name]) for name in source)
    assert all(torch.isfinite(value).all() for value in tuned.values() if value.is_floating_point())
