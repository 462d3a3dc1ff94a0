"""Whole-volume segmentation on dask.distributed workers: same labels as one process, resumable, fault tolerant."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import socket
from pathlib import Path

import dask
import numpy as np
import pytest
import torch
from distributed import Client, KilledWorker, LocalCluster
from inference_fakes import NUM_OBJECTS, OFFSETS_3D, LabelLookupNetwork
from skimage.metrics import adapted_rand_error

from spoco_monai.data.volume_io import open_volume, write_volume
from spoco_monai.inferers import (
    DaskNotInstalledError,
    SchedulerUnreachableError,
    SegmentationSettings,
    WorkDirectoryLockedError,
    dask_cluster,
    segment_volume,
)
from spoco_monai.inferers.segment_volume import WORK_DIRECTORY_SUFFIX
from spoco_monai.inferers.task_runner import DaskRunner

# 2 x 2 x 2 = 8 blocks, so that every worker has blocks whose earlier neighbours another worker segmented
SETTINGS = SegmentationSettings((16, 32, 32), overlap=0.5, block_shape=(16, 32, 32), offsets=OFFSETS_3D)
NOISE = 0.1


class KillingNetwork(LabelLookupNetwork):
    """Kills its worker process in the middle of a block, at its ``kill_at``-th forward call in that process, the
    first time any worker gets there (``marker`` is created then)."""

    def __init__(self, marker: str, kill_at: int = 2) -> None:
        super().__init__(NUM_OBJECTS, noise_scale=NOISE)
        self.marker = marker
        self.kill_at = kill_at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calls + 1 == self.kill_at:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)


@pytest.fixture(scope="module", autouse=True)
def workers_import_the_test_helpers():
    """The spawned workers unpickle the test networks: they need this folder on their path."""
    before = os.environ.get("PYTHONPATH")
    here = str(Path(__file__).parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, before]))
    yield
    if before is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = before


@pytest.fixture(scope="module")
def client(workers_import_the_test_helpers):
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def image_path(tmp_path_factory, image_3d):
    path = f"{tmp_path_factory.mktemp('input') / 'image.zarr'}"
    write_volume(path, image_3d, chunks=(2, 16, 32, 32))
    return path


@pytest.fixture(scope="module")
def one_process(image_path):
    """Labels of the run in one process."""
    return segment_volume(image_path, LabelLookupNetwork(NUM_OBJECTS, noise_scale=NOISE), SETTINGS, progress=False)


def _read(path) -> np.ndarray:
    with open_volume(path) as volume:
        return volume[:]


@pytest.mark.slow
@pytest.mark.parametrize("output", ["labels.zarr", "labels.ome.zarr", "labels.h5:seg"])
def test_workers_give_the_labels_of_one_process(tmp_path, client, image_path, one_process, labels_3d, output):
    target = f"{tmp_path / output}"
    network = LabelLookupNetwork(NUM_OBJECTS, noise_scale=NOISE)
    assert segment_volume(image_path, network, SETTINGS, output=target, scheduler=client, progress=False) == target
    np.testing.assert_array_equal(_read(target), one_process)
    # the seams: the objects are those of the whole volume
    assert adapted_rand_error(labels_3d, one_process)[0] < 0.01
    assert network.calls == 0  # the workers ran copies of it
    if output.endswith(".ome.zarr"):
        np.testing.assert_array_equal(_read(f"{target}:1"), one_process[::2, ::2, ::2])
    assert sorted(p.name for p in tmp_path.iterdir()) == [output.split(":")[0]]


@pytest.mark.slow
def test_an_array_input_travels_to_the_workers(tmp_path, client, image_3d, one_process):
    output = tmp_path / "labels.zarr"
    segment_volume(image_3d, LabelLookupNetwork(NUM_OBJECTS, noise_scale=NOISE), SETTINGS, output=output,
                   scheduler=client, progress=False)
    np.testing.assert_array_equal(_read(output), one_process)


@pytest.mark.slow
def test_interrupted_run_on_workers_resumes(tmp_path, client, image_path, one_process):
    output = tmp_path / "labels.zarr"
    interrupted = LabelLookupNetwork(NUM_OBJECTS, noise_scale=NOISE, fail_after=10)
    with pytest.raises(RuntimeError, match="interrupted"):
        segment_volume(image_path, interrupted, SETTINGS, output=output, scheduler=client, progress=False)
    assert not output.exists()
    finished = len(list((tmp_path / f"labels.zarr{WORK_DIRECTORY_SUFFIX}").glob("[0-9]*.json")))
    assert 0 < finished < 8
    lines = []
    segment_volume(image_path, LabelLookupNetwork(NUM_OBJECTS, noise_scale=NOISE), SETTINGS, output=output,
                   scheduler=client, progress=False, report=lines.append)
    # a worker may finish the block it was working on after the client has given up
    reused = int(re.search(r"(\d) of 8 blocks reused\.$", lines[0]).group(1))
    assert finished <= reused < 8
    np.testing.assert_array_equal(_read(output), one_process)


@pytest.mark.slow
def test_a_killed_worker_costs_a_retry_of_its_block(tmp_path, image_path, one_process):
    output = tmp_path / "labels.zarr"
    network = KillingNetwork(str(tmp_path / "killed"))
    segment_volume(image_path, network, SETTINGS, output=output, workers=2, progress=False)
    assert (tmp_path / "killed").exists()
    np.testing.assert_array_equal(_read(output), one_process)


@pytest.mark.slow
def test_a_run_stopped_by_a_killed_worker_resumes_to_the_same_labels(tmp_path, image_path, one_process):
    output = tmp_path / "labels.zarr"
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), pytest.raises(KilledWorker):
        segment_volume(image_path, KillingNetwork(str(tmp_path / "killed"), kill_at=5), SETTINGS, output=output,
                       workers=2, progress=False)
    assert not output.exists()
    # the killed block left nothing half-written behind: every record has its labels
    work = tmp_path / f"labels.zarr{WORK_DIRECTORY_SUFFIX}"
    assert {p.stem for p in work.glob("[0-9]*.json")} == {p.stem for p in work.glob("[0-9]*.npy")}
    segment_volume(image_path, LabelLookupNetwork(NUM_OBJECTS, noise_scale=NOISE), SETTINGS, output=output,
                   workers=2, progress=False)
    np.testing.assert_array_equal(_read(output), one_process)


@pytest.mark.slow
def test_second_run_on_a_locked_output_is_refused(tmp_path, client, image_path):
    output = tmp_path / "labels.zarr"
    with open(f"{output}{WORK_DIRECTORY_SUFFIX}.lock", "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(WorkDirectoryLockedError, match="another run"):
            segment_volume(image_path, LabelLookupNetwork(NUM_OBJECTS), SETTINGS, output=output, scheduler=client)


def test_unreachable_scheduler_is_one_clear_error(tmp_path, image_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), pytest.raises(
        SchedulerUnreachableError, match=f"cannot reach the dask scheduler at {address}"
    ):
        segment_volume(image_path, LabelLookupNetwork(NUM_OBJECTS), SETTINGS, output=tmp_path / "l.zarr",
                       scheduler=address)


def test_workers_without_dask_say_what_to_install(tmp_path, image_path, monkeypatch):
    monkeypatch.setattr(dask_cluster, "has_distributed", False)
    with pytest.raises(DaskNotInstalledError, match=r"pip install 'spoco-monai\[distributed\]'"):
        segment_volume(image_path, LabelLookupNetwork(NUM_OBJECTS), SETTINGS, output=tmp_path / "l.zarr", workers=2)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"workers": 2}, "needs an output path"),
        ({"workers": 2, "scheduler": "tcp://127.0.0.1:1", "output": "l.zarr"}, "not both"),
        ({"workers": 0, "output": "l.zarr"}, "workers must be a positive integer"),
        ({"torch_threads": 0}, "torch_threads must be a positive integer"),
    ],
)
def test_invalid_cluster_options_raise(tmp_path, image_3d, options, message):
    if "output" in options:
        options["output"] = tmp_path / options["output"]
    with pytest.raises(ValueError, match=message):
        segment_volume(image_3d, LabelLookupNetwork(NUM_OBJECTS), SETTINGS, **options)


@pytest.mark.slow
def test_tasks_in_flight_and_calls_per_task_keep_every_result_in_order(client):
    runner = DaskRunner(client, max_in_flight=3)
    squares = [n**2 for n in range(20)]
    assert runner.map(pow, [(number, 2) for number in range(20)], "square") == squares
    assert runner.map(pow, [(number, 2) for number in range(20)], "square", calls_per_task=6) == squares
    assert runner.map(pow, [], "nothing") == []
