from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spoco_monai import visualize
from spoco_monai.data import write_volume
from spoco_monai.bundle import load_bundle_network
from spoco_monai.visualize import label_rgb

# the first two colours of the palette of seed 0
COLOUR_1 = [0.26239574, 0.85995269, 0.93456668]
COLOUR_2 = [0.70497686, 0.79712242, 0.65771872]


def test_label_colours_are_fixed_by_the_rank_of_each_id():
    rgb = label_rgb(np.array([[0, 5], [3, 5]]))
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.float32
    np.testing.assert_allclose(rgb.reshape(4, 3), [[0, 0, 0], COLOUR_2, COLOUR_1, COLOUR_2], rtol=1e-6)


def test_background_and_negative_ids_are_black_and_do_not_shift_the_colours():
    with_background = label_rgb(np.array([[0, 5], [3, -1]], dtype=np.int32))
    np.testing.assert_array_equal(with_background[1, 1], [0, 0, 0])
    np.testing.assert_array_equal(label_rgb(np.array([[3, 5]], dtype=np.uint16)), with_background[[1, 0], [0, 1]][None])


def test_seed_changes_the_colours_and_empty_labels_give_no_colours():
    assert not np.array_equal(label_rgb(np.array([1, 2]), seed=0), label_rgb(np.array([1, 2]), seed=1))
    assert label_rgb(np.zeros((0, 4), dtype=np.int64)).shape == (0, 4, 3)


def _bundle_with_a_second_model(root):
    """A bundle of a 1x1x1 convolution with models ``model`` and ``flat``, each with its own weights."""
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    common = {
        "imports": ["$import spoco_monai"],
        "network_def": {"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 4, "kernel_size": 1},
        "patch_size": [8, 16, 16],
        "segmentation": {"_target_": "spoco_monai.inferers.SegmentationSettings", "roi_size": "@patch_size"},
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "image", "reader": "$spoco_monai.data.default_readers()"},
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
        ]},
    }
    (root / "configs" / "common.json").write_text(json.dumps(common))
    (root / "configs" / "inference.json").write_text("{}")
    (root / "configs" / "flat.json").write_text("{}")
    metadata = {"additional_models": {"flat": {"model_path": "models/flat.pt", "inference_config": "configs/flat.json"}}}
    (root / "configs" / "metadata.json").write_text(json.dumps(metadata))
    for name in ("model", "flat"):
        torch.save(torch.nn.Conv3d(1, 4, 1).state_dict(), root / "models" / f"{name}.pt")
    return root


def test_model_is_a_name_or_folder_as_for_segment_and_checkpoint_a_weights_file(tmp_path, monkeypatch):
    bundle = _bundle_with_a_second_model(tmp_path / "bundle")
    image = f"{tmp_path / 'image.h5'}:raw"
    write_volume(image, np.random.default_rng(0).random((8, 16, 16)).astype(np.float32))
    write_volume(tmp_path / "labels.tif", np.ones((8, 16, 16), np.int32))
    loaded = []

    def recording(bundle, checkpoint, *args):
        loaded.append(Path(checkpoint))
        return load_bundle_network(bundle, checkpoint, *args)

    monkeypatch.setattr(visualize, "load_bundle_network", recording)
    common = ["--image", image, "--labels", str(tmp_path / "labels.tif"), "--bundle", str(bundle)]
    visualize.main([*common, "--model", "flat", "--output-dir", str(tmp_path / "a")])
    visualize.main([*common, "--checkpoint", str(bundle / "models" / "flat.pt"), "--output-dir", str(tmp_path / "b")])
    visualize.main([*common, "--output-dir", str(tmp_path / "c")])
    assert loaded == [bundle / "models" / "flat.pt", bundle / "models" / "flat.pt", bundle / "models" / "model.pt"]
    assert (tmp_path / "a" / "labels.png").stat().st_size > 0


def test_a_weights_file_as_model_is_told_to_use_checkpoint(tmp_path):
    bundle = _bundle_with_a_second_model(tmp_path / "bundle")
    weights = str(bundle / "models" / "flat.pt")
    with pytest.raises(ValueError, match=f"is a file: a model is named by .* give a weights file with --checkpoint {weights}"):
        visualize.main(["--image", "i.h5", "--labels", "l.tif", "--bundle", str(bundle), "--model", weights,
                        "--output-dir", str(tmp_path)])
