"""Bad input stops a bundle run at start-up (``initialize``), before any network, data loader or checkpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_workflow import TINY, config, workflow
from monai.bundle import ConfigWorkflow
from monai.networks.nets import UNet

from spoco_monai.data import make_synthetic_volume

pytestmark = pytest.mark.slow


def _write(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)
    return str(path)


def _dataset(folder: Path, case: str) -> Path:
    image, labels = make_synthetic_volume((16, 24, 24), seed=1, mean_cell_size=10.0)
    item = {
        "image": _write(folder / "images" / "a.nii.gz", image[0]),
        "label": _write(folder / "labels" / "a.nii.gz", labels[0]),
    }
    if case == "missing file":
        item["label"] = str(folder / "labels" / "missing.nii.gz")
    elif case == "shape mismatch":
        item["label"] = _write(folder / "labels" / "b.nii.gz", labels[0, :, :20])
    elif case == "no objects":
        item["label"] = _write(folder / "labels" / "c.nii.gz", np.zeros_like(labels[0]))
    elif case == "nan image":
        image[0, 1, 2, 3] = np.nan
        item["image"] = _write(folder / "images" / "nan.nii.gz", image[0])
    elif case == "float labels":
        item["label"] = _write(folder / "labels" / "f.nii.gz", labels[0].astype(np.float32) / 2)
    elif case == "negative labels":
        item["label"] = _write(folder / "labels" / "n.nii.gz", labels[0].astype(np.int16) - 5)
    items = [] if case == "empty datalist" else [item]
    (folder / "datalist.json").write_text(json.dumps({"training": items, "validation": items}))
    return folder


@pytest.mark.parametrize(
    "case, overrides, message",
    [
        ("missing file", {}, "file not found: .*missing.nii.gz"),
        ("shape mismatch", {}, r"label spatial shape \(16, 20, 24\) differs from image"),
        ("2D config on 3D data", {"spatial_dims": 2}, "image is 3D .* spatial_dims=2"),
        ("empty datalist", {}, "empty or invalid datalist"),
        ("no objects", {}, "label has no object"),
        ("nan image", {}, r"nan\.nii\.gz: image holds 1 NaN or infinite value"),
        ("float labels", {}, r"f\.nii\.gz: label holds non-integer values"),
        ("negative labels", {}, r"n\.nii\.gz: label holds values below -1"),
        ("channel mismatch", {"in_channels": 2}, r"a\.nii\.gz: image has 1 channel\(s\) but the network expects in_chan"),
    ],
)
def test_bad_input_stops_at_start_up(tmp_path, case, overrides, message):
    dataset = _dataset(tmp_path / "data", case)
    output = tmp_path / "output"
    flow = ConfigWorkflow(
        config_file=config("train"), workflow_type=None, dataset_dir=str(dataset), output_dir=str(output), **overrides
    )
    with pytest.raises(RuntimeError) as error:
        flow.initialize()
    cause = error.value.__cause__
    assert isinstance(cause, ValueError)
    assert re.search(message, str(cause)), str(cause)
    assert not output.exists()


def test_manifest_of_another_fraction_stops_at_start_up(tiny_dataset, tmp_path):
    settings = {"dataset_dir": str(tiny_dataset), "output_dir": str(tmp_path), "num_iterations": 1, "val_interval": 1,
                "run_validation": False}
    workflow(("train",), **settings).run()
    saved = sorted(path.name for path in (tmp_path / "checkpoints").iterdir())
    flow = ConfigWorkflow(config_file=config("train"), workflow_type=None, **{**TINY, **settings,
                                                                            "sparse_fraction": 0.9})
    with pytest.raises(RuntimeError) as error:
        flow.initialize()
    assert isinstance(error.value.__cause__, ValueError)
    assert "already records identity 'synthetic_000.nii.gz'" in str(error.value.__cause__)
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == saved


def test_resume_checkpoint_of_another_dimensionality_stops_at_start_up(tiny_dataset, tmp_path):
    two_d = UNet(2, 1, 16, channels=[8, 16], strides=[2], num_res_units=1, norm=("group", {"num_groups": 8}))
    (tmp_path / "checkpoints").mkdir()
    torch.save({"network": two_d.state_dict()}, tmp_path / "checkpoints" / "checkpoint_iteration=1.pt")
    flow = ConfigWorkflow(config_file=config("train"), workflow_type=None,
                          **{**TINY, "dataset_dir": str(tiny_dataset), "output_dir": str(tmp_path)})
    with pytest.raises(RuntimeError) as error:
        flow.initialize()
    assert "checkpoint_iteration=1.pt' does not fit the network (EmbeddingUNet): the checkpoint is for a 2D " \
           "network, this run builds a 3D one" in str(error.value.__cause__)
