"""The 2D nuclei overlay (dsb2018_2d.json) trains and validates on a few real DSB2018 images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from bundle_workflow import config, rescored, workflow
from monai.bundle import ConfigWorkflow

from spoco_monai.cli import main
from spoco_monai.metrics import adapted_rand_error, average_precision, symmetric_best_dice

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DSB = DATA / "dsb2018_fluo"
# 2D patches, and 2D windows in place of the tiny 3D ones of the shared test settings
TWO_D = {"patch_size": [64, 64], "segmentation#roi_size": [64, 64]}


def _copy_split(source: Path, target: Path, names: list[str]) -> None:
    for folder in ("images", "labels"):
        (target / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(source / folder / name, target / folder / name)


@pytest.fixture
def small_dsb(tmp_path) -> Path:
    """Two training and two validation images of dsb2018_fluo, in its train/ val/ layout."""
    if not (DSB / "train" / "images").is_dir():
        pytest.skip(f"real data not found at {DSB} (the shared data folder ../shared/data is absent)")
    train_names = sorted(path.name for path in (DSB / "train" / "images").iterdir())[:2]
    val_names = sorted(path.name for path in (DSB / "val" / "images").iterdir())[:2]
    _copy_split(DSB / "train", tmp_path / "dsb" / "train", train_names)
    _copy_split(DSB / "val", tmp_path / "dsb" / "val", val_names)
    return tmp_path / "dsb"


def test_dsb2018_overlay_trains_and_validates(small_dsb, tmp_path):
    flow = workflow(
        ("train", "dsb2018_2d"), dataset_dir=str(small_dsb), output_dir=str(tmp_path / "output"),
        **TWO_D, clustering_kwargs={"min_size": 15, "strides": [2, 2]},
        patches_per_volume=2, max_validation_images=1,
    )
    assert flow.parser.get_parsed_content("spatial_dims") == 2
    assert len(flow.parser.get_parsed_content("train#datalist")) == 2
    flow.run()
    assert flow.parser.get_parsed_content("train#trainer").state.iteration == 2
    evaluator = flow.parser.get_parsed_content("validate#evaluator")
    # the metrics are those of the labels the evaluator wrote for the one validation image
    assert evaluator.state.metrics["val_sbd"] == pytest.approx(rescored(evaluator, symmetric_best_dice))
    assert evaluator.state.metrics["val_adapted_rand_error"] == pytest.approx(rescored(evaluator, adapted_rand_error))
    assert (tmp_path / "output" / "sparse_annotation.json").is_file()


def test_sparse_training_with_a_foreground_channel_learns_it_positive_unlabeled(small_dsb, tmp_path):
    flow = workflow(
        ("train", "dsb2018_2d"), dataset_dir=str(small_dsb), output_dir=str(tmp_path / "output"),
        **TWO_D, patches_per_volume=2, max_validation_images=1,
        foreground_head=True, run_validation=False,
    )
    # the unlabeled pixels' foreground prior rides along as a second channel of the target, from sparse_fraction
    assert flow.parser.get_parsed_content("annotated_fraction") == flow.parser.get_parsed_content("sparse_fraction")
    flow.run()
    trainer = flow.parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == 2
    foreground = trainer.state.batch["foreground"]
    assert foreground.shape[1] == 2 and set(foreground[:, 0].unique().tolist()) <= {-1.0, 1.0}
    assert bool(((foreground[:, 1] > 0) & (foreground[:, 1] < 1)).all())
    loss = flow.parser.get_parsed_content("loss")
    assert loss.last_terms["foreground"] > 0.0


@pytest.mark.parametrize("limit, expected", [(None, 2), (1, 1)])
def test_dsb2018_overlay_limits_validation_images(small_dsb, tmp_path, limit, expected):
    flow = workflow(
        ("train", "dsb2018_2d"), dataset_dir=str(small_dsb), output_dir=str(tmp_path / "output"),
        max_validation_images=limit, **TWO_D,
    )
    assert len(flow.parser.get_parsed_content("validate#datalist")) == expected



def test_nuclei_overlay_masks_the_clustering_with_a_foreground(tiny_dataset, small_dsb):
    base = workflow(("train",), dataset_dir=str(tiny_dataset)).parser
    assert base.get_parsed_content("validate#inferer").settings.foreground is None
    assert base.get_parsed_content("validate#postprocessing").transforms == ()
    nuclei = workflow(("train", "dsb2018_2d"), dataset_dir=str(small_dsb), **TWO_D).parser
    settings = nuclei.get_parsed_content("validate#inferer").settings
    # the intensity rule by default, sparse or dense; the clustering's own embedding kernel width
    assert settings.foreground == "intensity" and settings.whole_image_max_voxels == 2**21
    assert settings.offsets == ((-1, 0), (0, -1), (-3, 0), (0, -3), (-9, 0), (0, -9))
    assert settings.affinity_delta_dist == 5.0 and nuclei.get_parsed_content("delta_dist") == 2.0
    assert nuclei.get_parsed_content("network_def").out_channels == 16
    # with dense labels a learned foreground is one switch away: the network's own foreground channel
    dense = workflow(
        ("train", "dsb2018_2d"), dataset_dir=str(small_dsb), sparse=False, keep_background=True, sparse_fraction=1.0,
        foreground_head=True, **TWO_D,
    ).parser
    assert dense.get_parsed_content("validate#inferer").settings.foreground == "network"
    assert dense.get_parsed_content("network_def").out_channels == 17
    assert dense.get_parsed_content("loss").foreground_weight == 1.0


# overlays of each shipped 2D model, and its scores on the validation image 6b72b61b80060a9e (191 nuclei) as
# measured by bench/sparse_dsb.py's evaluation when it was shipped
SHIPPED_2D_MODELS = {
    "dsb2018_nuclei_2d": (("inference", "dsb2018_2d", "dsb2018_inference"), 0.9235, 0.9109),
    "dsb2018_nuclei_2d_sparse": (("inference", "dsb2018_2d", "dsb2018_inference", "dsb2018_sparse_inference"), 0.8941, 0.8333),
}


@pytest.mark.parametrize("model", sorted(SHIPPED_2D_MODELS))
def test_shipped_nuclei_model_segments_a_validation_image(tmp_path, model):
    if not (DSB / "val" / "images").is_dir():
        pytest.skip(f"real data not found at {DSB} (the shared data folder ../shared/data is absent)")
    configs, sbd, ap50 = SHIPPED_2D_MODELS[model]
    # a 520x696 image: a transposed output would not even have the ground truth's shape
    name = "6b72b61b80060a9e.tif"
    flow = ConfigWorkflow(
        config_file=config(*configs), workflow_type=None,
        input_image=str(DSB / "val" / "images" / name), output_dir=str(tmp_path), progress=False,
        device="$torch.device('cpu')",
    )
    flow.initialize()
    flow.run()
    labels = tifffile.imread(tmp_path / name.replace(".tif", "_instances.tif"))
    truth = tifffile.imread(DSB / "val" / "labels" / name)
    assert labels.shape == truth.shape == (520, 696) and labels.dtype == np.int32
    # inference and the evaluation of the table run the same path: the same scores to float precision
    assert symmetric_best_dice(labels, truth) == pytest.approx(sbd, abs=1e-3)
    assert average_precision(labels, truth, iou_threshold=0.5) == pytest.approx(ap50, abs=1e-3)
    # the command line picks the model by name and runs the same settings: the very same labels
    cli_output = tmp_path / "cli.tif"
    bundle_dir = Path(__file__).resolve().parents[2] / "bundle"
    assert main(["segment", str(DSB / "val" / "images" / name), str(cli_output), "--bundle", str(bundle_dir),
                 "--model", model, "--device", "cpu", "--no-progress"]) == 0
    np.testing.assert_array_equal(tifffile.imread(cli_output), labels)
