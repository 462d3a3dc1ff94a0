"""2-iteration DDP training with the bundle's train.json + multi_gpu_train.json in 2 gloo processes on CPU."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bundle"))
from bundle_workflow import workflow  # noqa: E402

from spoco_monai.data import write_synthetic_dataset  # noqa: E402

WORLD_SIZE = 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _train_on_rank(rank: int, port: int, dataset: str, runs: str) -> None:
    """Train on one rank (its own output folder) and save what the test compares to ``runs/rank<r>.pt``."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank))
    output = Path(runs, f"rank{rank}")
    flow = workflow(("train", "multi_gpu_train"), dataset_dir=dataset, output_dir=str(output),
                    run_validation=False, device="$torch.device('cpu')")
    try:
        flow.run()
        parser = flow.parser
        trainer = parser.get_parsed_content("train#trainer")
        sampler = parser.get_parsed_content("train#sampler")
        # the sparse subset of every training volume as this rank's preprocessing selects it
        sparsify = parser.get_parsed_content("load_image_and_label") + parser.get_parsed_content(
            "train#sparse_and_augment"
        )[:1]
        sparse_labels = []
        for item in parser.get_parsed_content("train#datalist"):
            data = dict(item)
            for transform in sparsify:
                data = transform(data)
            sparse_labels.append(torch.from_numpy(np.array(data["label"])))
        torch.save(
            {
                "teacher": _state(parser.get_parsed_content("teacher")),
                "student": _state(parser.get_parsed_content("saved_network")),
                "iteration": trainer.state.iteration,
                "is_ddp": isinstance(trainer.network, torch.nn.parallel.DistributedDataParallel),
                "shard": [int(index) for index in sampler],
                "sampler_ranks": (sampler.rank, sampler.num_replicas),
                "sparse_labels": sparse_labels,
            },
            Path(runs, f"rank{rank}.pt"),
        )
    finally:
        flow.finalize()


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


@pytest.fixture(scope="module")
def three_volumes(tmp_path_factory) -> Path:
    """Two training volumes (one per rank) and one validation volume."""
    folder = tmp_path_factory.mktemp("ddp_dataset")
    write_synthetic_dataset(folder, n_volumes=3, shape=(32, 48, 48), seed=3, mean_cell_size=14.0)
    return folder


def test_two_rank_training_keeps_ranks_in_sync(three_volumes, tmp_path):
    mp.spawn(_train_on_rank, args=(_free_port(), str(three_volumes), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    results = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD_SIZE)]
    assert all(r["iteration"] == 2 and r["is_ddp"] for r in results)
    assert [r["sampler_ranks"] for r in results] == [(0, WORLD_SIZE), (1, WORLD_SIZE)]
    # sharded: each rank trains on its own volume
    assert sorted(index for r in results for index in r["shard"]) == [0, 1]

    for network in ("teacher", "student"):
        first, second = (r[network] for r in results)
        assert first.keys() == second.keys()
        for name in first:
            torch.testing.assert_close(first[name], second[name], rtol=0, atol=0, msg=f"{network} {name}")
    # the EMA teacher trails the trained student
    teacher, student = results[0]["teacher"], results[0]["student"]
    assert any(not torch.equal(teacher[name], student[name]) for name in teacher if teacher[name].is_floating_point())

    sparse = [r["sparse_labels"] for r in results]
    assert len(sparse[0]) == 2
    for first, second in zip(*sparse):
        torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert any((labels > 0).any() for labels in sparse[0])

    # rank 0 alone writes checkpoints and logs
    assert any((tmp_path / "rank0" / "checkpoints").glob("*.pt"))
    assert not (tmp_path / "rank1" / "checkpoints").exists() or not any((tmp_path / "rank1" / "checkpoints").iterdir())
    assert any((tmp_path / "rank0").glob("events.out.tfevents*"))
    assert not any((tmp_path / "rank1").glob("events.out.tfevents*"))
