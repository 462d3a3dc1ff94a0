"""Whole-volume inference shared by 2 gloo processes on CPU equals the single-process run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inferers"))
from inference_fakes import (  # noqa: E402
    NUM_OBJECTS,
    OFFSETS_3D,
    VOLUME_SHAPE,
    LabelLookupNetwork,
    label_image,
    voronoi_labels,
)

from spoco_monai.cli import main  # noqa: E402
from spoco_monai.data.volume_io import open_volume, write_volume  # noqa: E402
from spoco_monai.inferers import BlockGrid, SegmentationSettings, segment_volume  # noqa: E402
from spoco_monai.inferers.segment_volume import UNMATCHED_DIRECTORY, WORK_DIRECTORY_SUFFIX  # noqa: E402

WORLD_SIZE = 2
# 2 x 2 x 2 = 8 blocks, so that every rank has blocks whose earlier neighbours belong to the other rank
SETTINGS = SegmentationSettings((16, 32, 32), overlap=0.5, block_shape=(16, 32, 32), offsets=OFFSETS_3D)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _image() -> np.ndarray:
    return label_image(voronoi_labels(VOLUME_SHAPE, NUM_OBJECTS, seed=0))


def _segment_on_rank(rank: int, port: int, output: str, results: str, fail_after: int | None = None) -> None:
    """Run on one rank; rank 1's network raises after ``fail_after`` windows (``None``: never)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    try:
        network = LabelLookupNetwork(NUM_OBJECTS, noise_scale=0.1, fail_after=fail_after if rank == 1 else None)
        returned = segment_volume(_image(), network, SETTINGS, output=output, progress=False)
        Path(results, f"rank{rank}.txt").write_text(f"{returned}\n{network.calls}")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def single_process(tmp_path_factory) -> tuple[np.ndarray, int]:
    """Labels of the single-process run and its number of network calls."""
    torch.set_num_threads(1)
    network = LabelLookupNetwork(NUM_OBJECTS, noise_scale=0.1)
    output = tmp_path_factory.mktemp("single") / "labels.zarr"
    segment_volume(_image(), network, SETTINGS, output=output, progress=False)
    with open_volume(output) as labels:
        return labels[:], network.calls


def test_two_processes_equal_single_process(tmp_path, single_process):
    reference, reference_calls = single_process
    output = tmp_path / "labels.zarr"
    mp.spawn(_segment_on_rank, args=(_free_port(), str(output), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    returned = [Path(tmp_path, f"rank{rank}.txt").read_text().split("\n") for rank in range(WORLD_SIZE)]
    assert [r[0] for r in returned] == [str(output), "None"]
    calls = [int(r[1]) for r in returned]
    # the blocks were shared: each rank ran half of the windows, together all of them
    assert sum(calls) == reference_calls and min(calls) > 0
    assert not Path(str(output) + WORK_DIRECTORY_SUFFIX).exists()
    with open_volume(output) as labels:
        np.testing.assert_array_equal(labels[:], reference)
    assert len(np.unique(reference)) >= NUM_OBJECTS // 2


def test_interrupted_distributed_run_resumes(tmp_path, single_process):
    reference, reference_calls = single_process
    output = tmp_path / "labels.zarr"
    # rank 1 finishes its first block (block 1) and fails in its second
    first_block = BlockGrid(VOLUME_SHAPE, SETTINGS.roi_size, SETTINGS.overlap, SETTINGS.block_shape).blocks[1]
    arguments = (_free_port(), str(output), str(tmp_path), first_block.num_windows)
    with pytest.raises(mp.ProcessRaisedException, match="interrupted"):
        mp.spawn(_segment_on_rank, args=arguments, nprocs=WORLD_SIZE, join=True)
    assert not output.exists()
    unmatched = Path(str(output) + WORK_DIRECTORY_SUFFIX, UNMATCHED_DIRECTORY)
    assert (unmatched / "0000001.json").exists()

    mp.spawn(_segment_on_rank, args=(_free_port(), str(output), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    calls = [int(Path(tmp_path, f"rank{rank}.txt").read_text().split("\n")[1]) for rank in range(WORLD_SIZE)]
    assert sum(calls) < reference_calls  # block 1 (and whatever rank 0 finished) was not run again
    with open_volume(output) as labels:
        np.testing.assert_array_equal(labels[:], reference)


def _segment_alone_on_rank_zero(rank: int, port: int, output: str) -> None:
    """Rank 0 segments by itself (``distributed=False``) while rank 1 only meets it at the end."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE, timeout=timedelta(seconds=60)
    )
    try:
        if rank == 0:
            segment_volume(_image(), LabelLookupNetwork(NUM_OBJECTS, noise_scale=0.1), SETTINGS, output=output,
                           distributed=False, progress=False)
        # a barrier inside the run would pair with this one and leave rank 0's last barrier waiting in vain
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_run_alone_inside_a_process_group_waits_for_nobody(tmp_path, single_process):
    reference, _ = single_process
    output = tmp_path / "labels.zarr"
    mp.spawn(_segment_alone_on_rank_zero, args=(_free_port(), str(output)), nprocs=WORLD_SIZE, join=True)
    with open_volume(output) as labels:
        np.testing.assert_array_equal(labels[:], reference)


def test_distributed_without_process_group_raises(tmp_path):
    output = tmp_path / "labels.zarr"
    with pytest.raises(ValueError, match="process group"):
        segment_volume(
            _image(), LabelLookupNetwork(NUM_OBJECTS), SETTINGS, output=output, distributed=True, progress=False
        )
    assert not output.exists()


def test_distributed_run_needs_an_output(tmp_path, monkeypatch):
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    with pytest.raises(ValueError, match="needs an output path"):
        segment_volume(_image(), LabelLookupNetwork(NUM_OBJECTS), SETTINGS, progress=False)


def test_command_line_under_torchrun(tmp_path):
    """``torchrun --nproc_per_node=2 -m spoco_monai.cli segment ...`` writes what one process writes."""
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    # a 1x1x1 convolution scaling the z-scored label id: objects lie far apart in the embedding space
    network_def = {"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 4, "kernel_size": 1, "bias": False}
    settings = {"_target_": "spoco_monai.inferers.SegmentationSettings", "roi_size": [32, 32, 32], "normalize": True}
    common_config = {"segmentation": settings, "network_def": network_def}
    (bundle / "configs" / "common.json").write_text(json.dumps(common_config))
    (bundle / "configs" / "inference.json").write_text("{}")
    torch.save({"weight": torch.tensor([50.0, 0.0, 0.0, 0.0]).view(4, 1, 1, 1, 1)}, bundle / "models" / "model.pt")
    image = f"{tmp_path / 'image.h5'}:raw"
    write_volume(image, voronoi_labels((40, 48, 48), 10, seed=5).astype(np.float32))
    options = ["--bundle", str(bundle), "--block-shape", "16", "--device", "cpu", "--no-progress"]
    assert main(["segment", image, str(tmp_path / "single.zarr"), *options]) == 0

    output = tmp_path / "shared.zarr"
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
              f"--master_port={_free_port()}", "-m", "spoco_monai.cli", "segment", image, str(output), *options]
    finished = subprocess.run(launch, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.split() == [str(output)]  # printed by rank 0 only
    with open_volume(output) as shared, open_volume(tmp_path / "single.zarr") as single:
        np.testing.assert_array_equal(shared[:], single[:])
