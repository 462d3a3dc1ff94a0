"""Fault injection: ``kill -9`` at random points of a ``segment`` run and of a short training, then resume.

Every resumed result must equal the uninterrupted one exactly. Each run is a separate process. The kill comes a
random delay after the run starts writing (its work directory, or the training's first file, appears), drawn by
a seeded generator over the time the uninterrupted run spent writing, so kills land anywhere in the work.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from spoco_monai.data import write_synthetic_dataset
from spoco_monai.data.volume_io import open_volume, write_volume

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TRIALS = 2
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests' / 'bundle'}"}


def _start(arguments: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *arguments], cwd=cwd, env=ENVIRONMENT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _wait_for(process: subprocess.Popen, marker: Path) -> None:
    while not marker.exists() and process.poll() is None:
        time.sleep(0.01)


def _finish(arguments: list[str], cwd: Path, marker: Path | None = None) -> float:
    """Run to the end; returns the seconds from the marker's appearance to the end."""
    process = _start(arguments, cwd)
    if marker is not None:
        _wait_for(process, marker)
    start = time.perf_counter()
    output = process.communicate(timeout=600)[0].decode()
    assert process.returncode == 0, output[-3000:]
    return time.perf_counter() - start


def _kill_after(arguments: list[str], cwd: Path, marker: Path, delay: float) -> None:
    process = _start(arguments, cwd)
    _wait_for(process, marker)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()


def _kill_times(duration: float, seed: int) -> list[float]:
    return list(np.random.default_rng(seed).uniform(0.0, duration, TRIALS))


@pytest.fixture(scope="module")
def segment_case(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("segment_faults")
    (folder / "bundle" / "configs").mkdir(parents=True)
    (folder / "bundle" / "models").mkdir()
    network = {"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 4, "kernel_size": 1, "bias": False}
    settings = {"_target_": "spoco_monai.inferers.SegmentationSettings", "roi_size": [32, 32, 32], "normalize": True}
    (folder / "bundle" / "configs" / "common.json").write_text(
        json.dumps({"segmentation": settings, "network_def": network})
    )
    (folder / "bundle" / "configs" / "inference.json").write_text("{}")
    weight = torch.tensor([50.0, 0.0, 0.0, 0.0]).view(4, 1, 1, 1, 1)
    torch.save({"weight": weight}, folder / "bundle" / "models" / "model.pt")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.repeat(np.repeat(rng.integers(1, 12, (6, 8, 8)), 8, 0), 8, 1), 8, 2)
    write_volume(f"{folder / 'image.h5'}:raw", labels.astype(np.float32))
    return folder


def _segment_arguments(output: str) -> list[str]:
    return ["-m", "spoco_monai.cli", "segment", "image.h5:raw", output, "--bundle", "bundle", "--block-shape", "16",
            "--overlap", "0.5", "--device", "cpu", "--no-progress"]


def test_killed_segment_resumes_to_the_same_labels(segment_case):
    duration = _finish(_segment_arguments("whole.h5:seg"), segment_case, segment_case / "whole.h5.spoco-work")
    with open_volume(f"{segment_case / 'whole.h5'}:seg") as volume:
        expected = volume[:]
    for trial, delay in enumerate(_kill_times(duration, seed=1)):
        output = f"killed{trial}.h5:seg"
        _kill_after(_segment_arguments(output), segment_case, segment_case / f"killed{trial}.h5.spoco-work", delay)
        if not (segment_case / f"killed{trial}.h5").exists():
            _finish(_segment_arguments(output), segment_case)
        with open_volume(segment_case / output) as volume:
            np.testing.assert_array_equal(volume[:], expected)
        assert not (segment_case / f"killed{trial}.h5.spoco-work").exists()


TRAINING = """
import sys
from bundle_workflow import workflow
settings = {"num_iterations": 6, "val_interval": 3, "checkpoint_interval": 1, "checkpoints_kept": 1,
            "train#datalist": "$@datalist['training'] + @datalist['validation']"}
workflow(("train",), dataset_dir=sys.argv[1], output_dir=sys.argv[2], **settings).run()
"""


def _final_weights(output: Path) -> dict[str, torch.Tensor]:
    final = torch.load(output / "checkpoints" / "checkpoint_final_iteration=6.pt", weights_only=True)
    best = torch.load(output / "checkpoints" / "model.pt", weights_only=True)
    return {**{f"network.{k}": v for k, v in final["network"].items()},
            **{f"teacher.{k}": v for k, v in final["teacher"].items()}, **{f"best.{k}": v for k, v in best.items()}}


def test_killed_training_resumes_to_the_same_weights(tmp_path):
    dataset = tmp_path / "data"
    write_synthetic_dataset(dataset, n_volumes=2, shape=(32, 48, 48), seed=3, mean_cell_size=14.0)
    whole = tmp_path / "whole"
    duration = _finish(["-c", TRAINING, str(dataset), str(whole)], tmp_path, whole / "sparse_annotation.json")
    expected = _final_weights(whole)
    for trial, delay in enumerate(_kill_times(duration, seed=2)):
        output = tmp_path / f"killed{trial}"
        _kill_after(["-c", TRAINING, str(dataset), str(output)], tmp_path, output / "sparse_annotation.json", delay)
        _finish(["-c", TRAINING, str(dataset), str(output)], tmp_path)
        resumed = _final_weights(output)
        assert resumed.keys() == expected.keys()
        for name, value in expected.items():
            assert torch.equal(resumed[name], value), (trial, delay, name)
