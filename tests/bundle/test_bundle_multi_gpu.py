"""The multi-GPU config layered on train.json, in one gloo process on CPU (world size 1)."""

from __future__ import annotations

import socket

import pytest
import torch
from bundle_workflow import workflow

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_multi_gpu_config_runs_with_gloo(tiny_dataset, tmp_path, monkeypatch):
    for name, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
                        "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    flow = workflow(("train", "multi_gpu_train"), dataset_dir=str(tiny_dataset), output_dir=str(tmp_path),
                    run_validation=False, device="$torch.device('cpu')")
    try:
        flow.run()
        trainer = flow.parser.get_parsed_content("train#trainer")
        assert isinstance(trainer.network, torch.nn.parallel.DistributedDataParallel)
        assert isinstance(trainer.data_loader.sampler, torch.utils.data.DistributedSampler)
        assert trainer.state.iteration == 2
        assert (tmp_path / "checkpoints").is_dir()
    finally:
        flow.finalize()
    assert not torch.distributed.is_initialized()
