"""The 3D real-data overlays (lm3d_nuclei, lm3d_membranes, em3d_neurons) point at readable, consistent volumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_workflow import CONFIGS, config
from monai.bundle import ConfigParser
from monai.transforms import Compose

from spoco_monai.clustering import default_offsets
from spoco_monai.data import volume_file

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# overlay -> (training file, validation file, training and validation shape (Z, Y, X) after the overlay's crop,
# objects in the training / validation label, the clustering's foreground rule)
SAMPLES = {
    "lm3d_nuclei": (
        "lm3d/gonuclear_1135.h5", "lm3d/gonuclear_1136.h5", (100, 100, 100), (100, 100, 100), 54, 32, "network",
    ),
    "lm3d_membranes": (
        "lm3d/plantseg_ovule_sample.h5", "lm3d/plantseg_ovule_sample.h5", (32, 128, 64), (32, 128, 64), 34, 31,
        None,
    ),
    "em3d_neurons": (
        "em3d/gala_fibsem_train.h5", "em3d/gala_fibsem_train.h5", (50, 100, 100), (50, 100, 100), 47, 48, None,
    ),
}


def _parser(overlay: str, **overrides) -> ConfigParser:
    sample = DATA / SAMPLES[overlay][0]
    if not sample.is_file():
        pytest.skip(f"real data not found at {sample} (the shared data folder ../shared/data is absent)")
    parser = ConfigParser()
    parser.read_config(config("train", overlay))
    # absolute, so that the paths resolve whatever the working directory of the test run
    parser["bundle_root"] = str(CONFIGS.parent)
    for key, value in overrides.items():
        parser[key] = value
    return parser


@pytest.mark.parametrize("overlay", sorted(SAMPLES))
def test_overlay_lists_the_sample_volumes(overlay):
    train_file, val_file, *_ = SAMPLES[overlay]
    parser = _parser(overlay)
    for split, expected in (("train#datalist", train_file), ("validate#datalist", val_file)):
        items = parser.get_parsed_content(split)
        assert [sorted(item) for item in items] == [["image", "label"]]
        assert items[0]["image"].endswith(":raw") and items[0]["label"].endswith(":label")
        for key in ("image", "label"):
            assert volume_file(items[0][key]).resolve() == (DATA / expected).resolve()


@pytest.mark.parametrize("overlay", sorted(SAMPLES))
def test_overlay_settings_fit_the_volumes(overlay):
    _, _, shape, _, train_objects, _, foreground = SAMPLES[overlay]
    parser = _parser(overlay)
    patch = parser.get_parsed_content("patch_size")
    assert parser.get_parsed_content("spatial_dims") == 3
    # the shipped 3D models are trained on every object of their training data
    assert parser.get_parsed_content("sparse_fraction") == 1.0
    assert parser.get_parsed_content("foreground") == foreground
    # a learned foreground is the network's last output channel, trained from the dense labels
    assert parser.get_parsed_content("foreground_head") == (foreground == "network")
    assert parser.get_parsed_content("network_def").out_channels == 16 + (foreground == "network")
    assert all(p <= s for p, s in zip(patch, shape))
    # the UNet halves every axis once per stride
    assert all(p % 2 ** len(parser.get_parsed_content("network_strides")) == 0 for p in patch)
    # the validation window (the patch) must hold the longest Mutex Watershed offset
    offsets = parser.get_parsed_content("mws_offsets")
    assert offsets == default_offsets(3, parser.get_parsed_content("object_diameter"), parser["element_size"])
    assert all(p > max(abs(o[axis]) for o in offsets) for axis, p in enumerate(patch))
    options = parser.get_parsed_content("clustering_kwargs")
    mean_object = shape[0] * shape[1] * shape[2] / train_objects
    if parser.get_parsed_content("clustering") == "mws":
        # the size filter must keep a typical object: at most a tenth of the mean object size
        assert 0 < options["min_size"] <= 0.1 * mean_object
    else:
        # seeds at least min_distance (finest-axis voxels) apart: a typical object must hold a ball of that radius
        element_size = parser.get_parsed_content("element_size") or [1.0, 1.0, 1.0]
        ball = 4 / 3 * np.pi * (options["min_distance"] * min(element_size)) ** 3 / np.prod(element_size)
        assert ball <= mean_object


@pytest.mark.parametrize("overlay", sorted(SAMPLES))
def test_overlay_sample_loads(overlay):
    _, _, train_shape, val_shape, train_objects, val_objects, _ = SAMPLES[overlay]
    parser = _parser(overlay)
    to_labels = parser.get_parsed_content("validate#to_labels")
    for split, shape, objects in (("train", train_shape, train_objects), ("validate", val_shape, val_objects)):
        load = Compose(parser.get_parsed_content(f"{split}#load") + to_labels)
        sample = load(parser.get_parsed_content(f"{split}#datalist")[0])
        assert tuple(sample["image"].shape) == (1, *shape)
        assert tuple(sample["label"].shape) == (1, *shape)
        assert sample["label"].dtype == torch.int64
        assert len(torch.unique(sample["label"][sample["label"] > 0])) == objects
        assert abs(float(sample["image"].mean())) < 1e-3 and abs(float(sample["image"].std()) - 1.0) < 1e-3


@pytest.mark.parametrize("overlay", sorted(SAMPLES))
def test_overlay_check_data_passes(overlay, tmp_path):
    # a fresh output folder: a training run of the overlay may have left a sparse-annotation manifest
    parser = _parser(overlay, output_dir=str(tmp_path))
    checked_train, checked_val, *_ = parser.get_parsed_content("check_data")
    assert checked_train == parser.get_parsed_content("train#datalist")
    assert checked_val == parser.get_parsed_content("validate#datalist")


@pytest.mark.parametrize("overlay", sorted(SAMPLES))
def test_overlay_check_data_names_missing_volume(overlay, tmp_path):
    parser = _parser(overlay, dataset_dir=str(tmp_path))
    with pytest.raises(RuntimeError) as error:
        parser.get_parsed_content("check_data")
    message = str(error.value.__cause__)
    assert "file not found" in message and str(tmp_path / Path(SAMPLES[overlay][0]).name) in message


@pytest.mark.parametrize("overlay", ["lm3d_membranes", "em3d_neurons"])
def test_single_volume_overlays_report_on_voxels_training_never_sees(overlay):
    parser = _parser(overlay)
    file_shape = {"lm3d_membranes": (32, 128, 128), "em3d_neurons": (50, 100, 200)}[overlay]
    seen = torch.zeros(file_shape, dtype=torch.int64)
    for region in ("train_region", "report_region"):
        seen[parser.get_parsed_content(region)] += 1
    # the two regions tile the volume without overlap
    assert int(seen.min()) == 1 and int(seen.max()) == 1
