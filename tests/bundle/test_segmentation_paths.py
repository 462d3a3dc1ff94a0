"""One input, one bundle: the command line, the bundle's inference (in memory and block by block into a file) and
Python give the very same labels."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bundle_workflow import config
from monai.bundle import ConfigParser, ConfigWorkflow

from spoco_monai.cli import main
from spoco_monai.data import open_volume, write_volume
from spoco_monai.data.synthetic import make_synthetic_volume
from spoco_monai.engines import load_network_weights
from spoco_monai.inferers import DirectoryBlockStore, segment_volume

BUNDLE = Path(__file__).resolve().parents[2] / "bundle"


def test_command_line_bundle_and_python_give_identical_labels(tmp_path):
    # 2 x 2 x 2 windows of the shipped 3D model (patch 32x64x64, overlap 0.25)
    image, _ = make_synthetic_volume((40, 80, 80), seed=7)
    path = tmp_path / "volume.nii.gz"
    write_volume(path, image[0])

    flow = ConfigWorkflow(
        config_file=config("inference"), workflow_type=None, input_image=str(path), output_dir=str(tmp_path / "bundle"),
        progress=False, device="$torch.device('cpu')",
    )
    flow.initialize()
    flow.run()
    from_bundle = np.asarray(nib.load(tmp_path / "bundle" / "volume_instances.nii.gz").dataobj)

    blockwise = ConfigWorkflow(
        config_file=config("inference", "inference_volume"), workflow_type=None, input_image=str(path),
        output_path=f"{tmp_path / 'out' / 'labels.h5'}:seg", progress=False, device="$torch.device('cpu')",
    )
    blockwise.initialize()
    blockwise.run()
    with open_volume(f"{tmp_path / 'out' / 'labels.h5'}:seg") as volume:
        from_bundle_blockwise = np.asarray(volume)

    assert main(["segment", str(path), str(tmp_path / "cli.zarr"), "--bundle", str(BUNDLE), "--device", "cpu",
                 "--no-progress"]) == 0
    with open_volume(tmp_path / "cli.zarr") as volume:
        from_command_line = np.asarray(volume)

    parser = ConfigParser()
    parser.read_config(config("inference"))
    parser["bundle_root"] = str(BUNDLE)
    network = load_network_weights(parser.get_parsed_content("network_def"), BUNDLE / "models" / "model.pt").eval()
    from_python = segment_volume(str(path), network, parser.get_parsed_content("segmentation"), progress=False)

    assert from_bundle.shape == image.shape[1:] and from_bundle.max() > 10
    np.testing.assert_array_equal(from_bundle_blockwise, from_bundle)
    np.testing.assert_array_equal(from_command_line, from_bundle)
    np.testing.assert_array_equal(from_python, from_bundle)


def test_bundle_blockwise_inference_says_what_a_resumed_run_reuses(tmp_path, monkeypatch, capsys):
    image, _ = make_synthetic_volume((40, 80, 80), seed=7)
    path = tmp_path / "volume.nii.gz"
    write_volume(path, image[0])
    output = tmp_path / "labels.zarr"
    save = DirectoryBlockStore.save

    def save_then_stop(store, index, core_labels, record):
        save(store, index, core_labels, record)
        raise KeyboardInterrupt

    def blockwise() -> ConfigWorkflow:
        flow = ConfigWorkflow(
            config_file=config("inference", "inference_volume"), workflow_type=None, input_image=str(path),
            output_path=str(output), progress=False, device="$torch.device('cpu')",
        )
        flow.initialize()
        return flow

    monkeypatch.setattr(DirectoryBlockStore, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        blockwise().run()
    monkeypatch.undo()
    capsys.readouterr()
    blockwise().run()
    assert capsys.readouterr().out.endswith(
        f"resuming the interrupted run in {output}.spoco-work: 1 of 1 blocks reused.\n"
        f"100 objects found\n{output}\n"
    )
