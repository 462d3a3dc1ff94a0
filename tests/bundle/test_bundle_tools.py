"""MONAI bundle tools on the bundle: network input/output check, TorchScript export, the shipped weights."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from bundle_workflow import CONFIGS, config
from monai.bundle import ConfigParser

from spoco_monai.engines import load_network_weights

pytestmark = pytest.mark.slow

MODEL = CONFIGS.parent / "models" / "model.pt"


def _bundle_command(*arguments: str) -> None:
    command = [sys.executable, "-m", "monai.bundle", *arguments, "--meta_file", str(CONFIGS / "metadata.json"),
               "--config_file", repr(config("inference"))]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _network_def() -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(config("inference"))
    return parser.get_parsed_content("network_def")


def test_verify_net_in_out():
    _bundle_command("verify_net_in_out", "network_def", "--device", "cpu", "--n", "4")


def test_ckpt_export_torchscript_matches_network(tmp_path):
    torch.manual_seed(0)
    network = _network_def().eval()
    torch.save(network.state_dict(), tmp_path / "model.pt")
    _bundle_command("ckpt_export", "network_def", "--filepath", str(tmp_path / "model.ts"),
                    "--ckpt_file", str(tmp_path / "model.pt"))
    scripted = torch.jit.load(str(tmp_path / "model.ts"))
    image = torch.rand(1, 1, 16, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(image), network(image))


def test_shipped_model_loads_into_inference_network():
    if not MODEL.is_file():
        pytest.skip(f"the shipped weights {MODEL} are absent")
    assert MODEL.stat().st_size < 20 * 2**20
    network = load_network_weights(_network_def(), MODEL).eval()
    with torch.no_grad():
        embeddings = network(torch.rand(1, 1, 32, 64, 64))
    assert embeddings.shape == (1, 16, 32, 64, 64) and torch.isfinite(embeddings).all()
