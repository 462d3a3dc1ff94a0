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
from spoco_monai.data.volume_io import open_volume
from spoco_monai.transforms import region_slices

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# overlay -> (training items, validation items: each (file, shape (Z, Y, X) after the item's crop, objects), the
# clustering's foreground rule)
SAMPLES = {
    "lm3d_nuclei": (
        [("lm3d/gonuclear_1135.h5", (100, 100, 100), 54)],
        [("lm3d/gonuclear_1136.h5", (50, 100, 100), 21)],
        "network",
    ),
    "lm3d_membranes": (
        [("lm3d/plantseg_ovule_sample.h5", (32, 128, 64), 34)],
        [("lm3d/plantseg_ovule_sample.h5", (32, 128, 64), 31)],
        None,
    ),
    "em3d_neurons": (
        [("em3d/gala_fibsem_train.h5", (50, 100, 100), 47), ("em3d/neuroproof_fib_A.h5", (125, 125, 250), 176)],
        [("em3d/gala_fibsem_train.h5", (50, 100, 100), 48)],
        None,
    ),
}
SPLITS = (("train", 0), ("validate", 1))


def _parser(overlay: str, **overrides) -> ConfigParser:
    sample = DATA / SAMPLES[overlay][0][0][0]
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
    parser = _parser(overlay)
    for split, index in SPLITS:
        items = parser.get_parsed_content(f"{split}#datalist")
        assert len(items) == len(SAMPLES[overlay][index])
        for item, (expected, _, _) in zip(items, SAMPLES[overlay][index]):
            assert set(item) <= {"image", "label", "region"}
            assert item["image"].endswith(":raw") and item["label"].endswith(":label")
            for key in ("image", "label"):
                assert volume_file(item[key]).resolve() == (DATA / expected).resolve()


@pytest.mark.parametrize("overlay", sorted(SAMPLES))
def test_overlay_settings_fit_the_volumes(overlay):
    (_, shape, train_objects), *_ = SAMPLES[overlay][0]
    foreground = SAMPLES[overlay][2]
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
    parser = _parser(overlay)
    to_labels = parser.get_parsed_content("validate#to_labels")
    for split, index in SPLITS:
        load = Compose(parser.get_parsed_content(f"{split}#load") + to_labels)
        for item, (_, shape, objects) in zip(parser.get_parsed_content(f"{split}#datalist"), SAMPLES[overlay][index]):
            sample = load(item)
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
    assert "file not found" in message and str(tmp_path / Path(SAMPLES[overlay][0][0][0]).name) in message


@pytest.mark.parametrize("overlay", sorted(SAMPLES))
def test_overlays_report_on_voxels_training_never_sees(overlay):
    parser = _parser(overlay)
    seen: dict[Path, np.ndarray] = {}
    for split, region in (("train", "train_region"), ("validate", "report_region")):
        default = parser.get_parsed_content(region)
        for item in parser.get_parsed_content(f"{split}#datalist"):
            file = volume_file(item["image"]).resolve()
            if file not in seen:
                seen[file] = np.zeros(open_volume(item["image"]).shape, dtype=np.int64)
            slices = region_slices(item["region"], 3) if "region" in item else default
            seen[file][slices] += 1
    # no voxel is both trained and reported on
    assert all(int(counts.max()) == 1 for counts in seen.values())
