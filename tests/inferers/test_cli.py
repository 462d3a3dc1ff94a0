from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from inference_fakes import voronoi_labels
from skimage.metrics import adapted_rand_error

from spoco_monai.cli import load_bundle_network, main
from spoco_monai.data.volume_io import open_volume, write_volume

# a 1x1x1 convolution that scales the (z-scored) label id into a 4-dim embedding: with ids 1..10 (std < 3)
# objects lie more than 50 / 3 > 2 delta_d apart
NETWORK_DEF = {"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 4, "kernel_size": 1, "bias": False}
WEIGHT = torch.tensor([50.0, 0.0, 0.0, 0.0]).view(4, 1, 1, 1, 1)


def make_bundle(root, config, checkpoint):
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "configs" / "inference.json").write_text(json.dumps(config))
    torch.save(checkpoint, root / "models" / "model.pt")
    return root


@pytest.fixture()
def bundle(tmp_path):
    return make_bundle(tmp_path / "bundle", {"roi_size": [32, 32, 32], "network_def": NETWORK_DEF}, {"weight": WEIGHT})


@pytest.fixture()
def volume(tmp_path):
    labels = voronoi_labels((40, 48, 48), 10, seed=5)
    path = f"{tmp_path / 'image.h5'}:raw"
    write_volume(path, labels.astype(np.float32))
    return path, labels


def test_segment_command_writes_labels(tmp_path, bundle, volume, capsys):
    path, labels = volume
    output = tmp_path / "labels.zarr"
    status = main(
        ["segment", path, str(output), "--bundle", str(bundle), "--block-shape", "16", "--overlap", "0.5",
         "--device", "cpu", "--no-progress"]
    )
    assert status == 0
    assert capsys.readouterr().out.strip() == str(output)
    with open_volume(output) as result:
        assert adapted_rand_error(labels, result[:])[0] == 0.0


def test_segment_command_refuses_existing_output(tmp_path, bundle, volume, capsys):
    path, _ = volume
    output = tmp_path / "labels.tif"
    output.write_bytes(b"keep")
    status = main(["segment", path, str(output), "--bundle", str(bundle), "--device", "cpu", "--no-progress"])
    assert status == 1
    assert "already exists" in capsys.readouterr().err
    assert output.read_bytes() == b"keep"


def test_nested_checkpoint_and_explicit_roi(tmp_path, volume):
    config = {"network_def": NETWORK_DEF}
    bundle = make_bundle(tmp_path / "nested", config, {"network": {"weight": WEIGHT}, "epoch": 3})
    network, _ = load_bundle_network(bundle)
    assert not network.training
    torch.testing.assert_close(network.weight, WEIGHT)
    path, _ = volume
    output = f"{tmp_path / 'labels.h5'}:seg"
    arguments = ["segment", path, output, "--bundle", str(bundle), "--roi-size", "32", "32", "32", "--no-progress"]
    assert main([*arguments, "--normalize", "none"]) == 0
    with pytest.raises(SystemExit):
        main([*arguments, "--mode", "pixels"])


@pytest.mark.parametrize(
    "config, checkpoint, message",
    [
        ({"roi_size": [32, 32, 32]}, {"weight": WEIGHT}, "define no 'network_def'"),
        ({"network_def": NETWORK_DEF}, {"weight": WEIGHT}, "pass --roi-size"),
        ({"roi_size": [32, 32, 32], "network_def": NETWORK_DEF}, {"epoch": 3, "optimizer": {}}, "holds no state dict"),
    ],
)
def test_invalid_bundle_reports_error(tmp_path, volume, capsys, config, checkpoint, message):
    bundle = make_bundle(tmp_path / "bad", config, checkpoint)
    path, _ = volume
    assert main(["segment", path, str(tmp_path / "out.zarr"), "--bundle", str(bundle), "--no-progress"]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.zarr").exists()
