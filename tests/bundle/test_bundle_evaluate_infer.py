from __future__ import annotations

import csv
from functools import partial

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from bundle_workflow import config, rescored, workflow
from monai.bundle import ConfigWorkflow
from monai.networks.nets import UNet

from spoco_monai import visualize
from spoco_monai.metrics import (
    absolute_count_difference,
    adapted_rand_error,
    average_precision,
    mean_average_precision,
    symmetric_best_dice,
)

pytestmark = pytest.mark.slow

INFERENCE_TINY = {
    "device": "$torch.device('cpu')",
    "network_channels": [8, 16],
    "network_strides": [2],
    "patch_size": [32, 32, 32],
    "clustering": "mws",
    "clustering_kwargs": {"strides": [4, 4, 4]},
    "progress": False,
}


def test_evaluate(tiny_dataset, trained, tmp_path):
    flow = workflow(
        ("train", "evaluate"), dataset_dir=str(tiny_dataset), output_dir=str(tmp_path),
        model_path=str(trained),
    )
    flow.run()
    metrics = flow.parser.get_parsed_content("validate#evaluator").state.metrics
    assert set(metrics) == {"val_sbd", "val_adapted_rand_error", "val_count_difference", "val_ap50", "val_map"}
    # each is the metric of the labels the evaluator wrote for the one validation image
    evaluator = flow.parser.get_parsed_content("validate#evaluator")
    recomputed = {
        "val_sbd": rescored(evaluator, symmetric_best_dice),
        "val_adapted_rand_error": rescored(evaluator, adapted_rand_error),
        "val_count_difference": rescored(evaluator, absolute_count_difference),
        "val_ap50": rescored(evaluator, partial(average_precision, iou_threshold=0.5)),
        "val_map": rescored(evaluator, mean_average_precision),
    }
    assert metrics == pytest.approx(recomputed)
    with open(tmp_path / "metrics.csv") as file:
        rows = dict(csv.reader(file))
    assert float(rows["val_sbd"]) == metrics["val_sbd"]
    assert (tmp_path / "val_adapted_rand_error_raw.csv").is_file()


def test_inference_writes_labels_and_report(tiny_dataset, trained, tmp_path):
    image_path = tiny_dataset / "images" / "synthetic_001.nii.gz"
    label_path = tiny_dataset / "labels" / "synthetic_001.nii.gz"
    flow = ConfigWorkflow(
        config_file=config("inference"), workflow_type=None, input_image=str(image_path), output_dir=str(tmp_path),
        model_path=str(trained), **INFERENCE_TINY,
    )
    flow.initialize()
    flow.run()
    output = tmp_path / "synthetic_001_instances.nii.gz"
    labels = np.asarray(nib.load(output).dataobj)
    assert labels.shape == (32, 48, 48)
    assert np.issubdtype(labels.dtype, np.integer) and labels.max() > 1

    overrides = [f"--set={key}={value}" for key, value in
                 (("network_channels", "[8, 16]"), ("network_strides", "[2]"), ("patch_size", "[32, 32, 32]"))]
    report = visualize.main([
        "--image", str(image_path), "--labels", str(output), "--ground-truth", str(label_path),
        "--config", *config("inference"), "--checkpoint", str(trained),
        "--output-dir", str(tmp_path / "report"), *overrides,
    ])
    ground_truth = np.asarray(nib.load(label_path).dataobj)
    assert report["adapted_rand_error"] == float(adapted_rand_error(labels, ground_truth))
    assert report["objects"] == len(np.unique(labels[labels > 0]))
    assert np.array_equal(tifffile.imread(report["labels_tiff"]), labels)
    assert (tmp_path / "report" / "synthetic_001_instances.png").stat().st_size > 0


def test_inference_refuses_to_overwrite_unless_told(tiny_dataset, trained, tmp_path):
    image_path = tiny_dataset / "images" / "synthetic_001.nii.gz"
    existing = tmp_path / "synthetic_001_instances.nii.gz"
    existing.write_bytes(b"keep")
    settings = {"input_image": str(image_path), "output_dir": str(tmp_path), "model_path": str(trained),
                **INFERENCE_TINY}
    flow = ConfigWorkflow(config_file=config("inference"), workflow_type=None, **settings)
    with pytest.raises(RuntimeError) as error:
        flow.initialize()
    assert isinstance(error.value.__cause__, FileExistsError)
    assert f"1 inference output(s) already exist: {existing}; pass --overwrite True" in str(error.value.__cause__)
    assert existing.read_bytes() == b"keep"
    ConfigWorkflow(config_file=config("inference"), workflow_type=None, overwrite=True, **settings).initialize()


def test_checkpoint_of_another_dimensionality_stops_inference_at_start_up(tiny_dataset, tmp_path):
    two_d = UNet(2, 1, 16, channels=[8, 16], strides=[2], num_res_units=1, norm=("group", {"num_groups": 8}))
    torch.save(two_d.state_dict(), tmp_path / "two_d.pt")
    flow = ConfigWorkflow(
        config_file=config("inference"), workflow_type=None, output_dir=str(tmp_path / "out"),
        input_image=str(tiny_dataset / "images" / "synthetic_001.nii.gz"), model_path=str(tmp_path / "two_d.pt"),
        **INFERENCE_TINY,
    )
    with pytest.raises(RuntimeError) as error:
        flow.initialize()
    message = str(error.value.__cause__)
    assert "two_d.pt' does not fit the network (EmbeddingUNet): the checkpoint is for a 2D network, this run builds a " \
        "3D one" in message
