"""A few training iterations of the bundle on a crop of a real 3D membrane-stained volume (PlantSeg ovules)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
from bundle_workflow import rescored, workflow

from spoco_monai.metrics import adapted_rand_error, symmetric_best_dice

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
OVULE = DATA / "lm3d" / "plantseg_ovule_sample.h5"


def test_train_on_real_crop(tmp_path):
    if not OVULE.is_file():
        pytest.skip(f"real data not found at {OVULE} (the shared data folder ../shared/data is absent)")
    with h5py.File(OVULE, "r") as source:
        raw, label = source["raw"][:, :64, :64], source["label"][:, :64, :64]
    with h5py.File(tmp_path / "ovule_crop.h5", "w") as crop:
        crop["raw"], crop["label"] = raw, label
    item = {"image": "ovule_crop.h5:raw", "label": "ovule_crop.h5:label"}
    (tmp_path / "datalist.json").write_text(json.dumps({"training": [item], "validation": [item]}))
    flow = workflow(("train",), dataset_dir=str(tmp_path), output_dir=str(tmp_path / "output"), num_iterations=3,
                    val_interval=3)
    flow.run()
    assert flow.parser.get_parsed_content("train#trainer").state.iteration == 3
    evaluator = flow.parser.get_parsed_content("validate#evaluator")
    # the metrics are those of the labels the evaluator wrote for the crop
    assert evaluator.state.metrics["val_adapted_rand_error"] == pytest.approx(rescored(evaluator, adapted_rand_error))
    assert evaluator.state.metrics["val_sbd"] == pytest.approx(rescored(evaluator, symmetric_best_dice))
