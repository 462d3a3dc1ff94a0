"""The rows of ``bench/recipe_ablations.py``: each overlay changes what its row says and still makes a pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose

from bench import recipe_ablations

REPOSITORY = Path(__file__).resolve().parents[2]
CONFIGS = REPOSITORY / "bundle" / "configs"


def _targets(overlay: dict) -> list[str]:
    return [step if isinstance(step, str) else step["_target_"] for step in overlay["train#sparse_and_augment"]]


def test_every_overlay_names_an_overlay_and_every_row_a_known_setting():
    assert all(row.overlay is None or row.overlay in recipe_ablations.OVERLAYS for row in recipe_ablations.ROWS.values())
    assert recipe_ablations.ROWS["base"].base == recipe_ablations.sparse_dsb.SETTINGS["dense+fg"]


def test_no_flips_overlay_drops_exactly_the_flips_and_rotations():
    full = json.loads((CONFIGS / "train.json").read_text())["train"]["sparse_and_augment"]
    steps = _targets(recipe_ablations.OVERLAYS["no_flips_rotations"]())
    assert "RandAxisFlipd" not in steps and "RandRotate90d" not in steps
    assert len(steps) == len(full) - 2


def test_scaling_overlay_zooms_right_after_the_rotations():
    steps = _targets(recipe_ablations.OVERLAYS["scaling"]())
    rotation = steps.index("RandRotate90d")
    assert steps[rotation + 1 : rotation + 3] == ["RandZoomd", "CastToTyped"]


@pytest.mark.parametrize("name", sorted(recipe_ablations.OVERLAYS))
def test_overlay_pipeline_keeps_image_and_label_aligned(tmp_path, name):
    # the image carries a blocky label's id as its intensity; after every transform of the training pipeline
    # (crop, flips, scaling, normalisation, the monotone intensity augmentation with its noise) the image's
    # median inside each label's core must still rise with the label's id
    path = recipe_ablations.write_overlay(name, tmp_path)
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "common.json"), str(CONFIGS / "train.json"), str(CONFIGS / "dsb2018_2d.json"), str(path)])
    parser.update({"sparse": False, "sparse_fraction": 1.0, "keep_background": True, "foreground_head": True})
    parser["sparse_manifest"] = str(tmp_path / "sparse_annotation.json")
    steps = parser.get_parsed_content("train#sparse_and_augment")
    steps.insert(0, parser.get_parsed_content("normalize_image"))
    label = np.kron(np.arange(1, 17).reshape(4, 4), np.ones((40, 40), dtype=np.int64))[None]
    sample = {"image": label.astype(np.float32) * 10.0, "label": MetaTensor(label, meta={"filename_or_obj": "blocks.tif"})}
    for patch in Compose(steps).set_random_state(3)(sample):
        image, patch_label = np.asarray(patch["image"]), np.asarray(patch["label"])
        assert image.shape == patch_label.shape == (1, 128, 128)
        medians = []
        for value in np.unique(patch_label):
            inside = patch_label == value
            core = inside & np.roll(inside, 3, 1) & np.roll(inside, -3, 1) & np.roll(inside, 3, 2) & np.roll(inside, -3, 2)
            if core.sum() >= 50:
                medians.append(np.median(image[core]))
        assert len(medians) >= 2 and np.all(np.diff(medians) > 0)
