"""Whole volumes on dask.distributed: the default model on one process, one worker and two workers.

Every case runs in its own subprocess. "one process" is ``segment_volume`` without dask; "N workers" starts a
LocalCluster of N worker processes (one thread each; the scheduler runs in the client process, as ``--workers N``
runs it) and segments the same zarr input into a zarr output. Peak memory: the client's ``ru_maxrss`` (scheduler
included) and each worker's, read on the workers at the end. Bytes through the client and scheduler: the pickled
arguments and results of every task (the network and the input's reader go to every worker once, counted apart).
The labels of every case are compared with the one-process labels (identical, and identical up to renaming).
Last, the scheduler's cost per task: 2000 empty tasks through the same runner on two workers.

    python -m bench.cluster_volume --sizes 128 512
    python -m bench.cluster_volume --sizes 128 256 --test-time-flips off     # the table in bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from bench.volume import write_input

from spoco_monai.bundle import DEFAULT_MODEL, bundle_model, bundle_settings, load_bundle_network
from spoco_monai.inferers import segment_volume
from spoco_monai.inferers.task_runner import DaskRunner

REPOSITORY = Path(__file__).resolve().parents[1]
BUNDLE = REPOSITORY / "bundle"
OVERHEAD_TASKS = 2000


def counting_bytes() -> dict[str, int]:
    """Count the pickled bytes of every task's arguments and result in :class:`DaskRunner`; the shared arguments
    (scattered once per worker) apart."""
    counts = {"tasks": 0, "task_bytes": 0, "shared_bytes": 0}
    plain_map = DaskRunner.map

    def map_counting(runner, function, arguments, description, calls_per_task=1, **shared):
        results = plain_map(runner, function, arguments, description, calls_per_task, **shared)
        counts["tasks"] += -(-len(arguments) // calls_per_task)
        counts["task_bytes"] += sum(len(pickle.dumps(a)) for a in arguments) + len(pickle.dumps(results))
        counts["shared_bytes"] += len(pickle.dumps(shared)) * len(runner.client.scheduler_info()["workers"])
        return results

    DaskRunner.map = map_counting
    return counts


def run_case(args: argparse.Namespace) -> dict:
    """One measurement, in this (child) process."""
    torch.set_num_threads(1)
    model = bundle_model(BUNDLE, DEFAULT_MODEL)
    network, config = load_bundle_network(BUNDLE, BUNDLE / model["model_path"], model["configs"], "cpu")
    settings = bundle_settings(config)
    if args.test_time_flips is not None:
        settings = dataclasses.replace(settings, test_time_flips=args.test_time_flips == "on")
    image = str(Path(args.workdir) / f"image_{args.size}.zarr")
    output = str(Path(args.workdir) / f"labels_{args.size}_{args.workers}.zarr")
    if args.workers == 0:
        start = time.perf_counter()
        segment_volume(image, network, settings, output=output, overwrite=True, progress=False)
        return {"total": time.perf_counter() - start, "client_mib": _peak_mib(), "worker_mib": []}
    from distributed import Client, LocalCluster

    counts = counting_bytes()
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=None) as cluster, Client(
        cluster
    ) as client:
        start = time.perf_counter()
        segment_volume(
            image, network, settings, output=output, overwrite=True, progress=False, scheduler=client, torch_threads=1
        )
        total = time.perf_counter() - start
        workers = client.run(_peak_mib)
    return {"total": total, "client_mib": _peak_mib(), "worker_mib": sorted(workers.values()), **counts}


def scheduler_overhead() -> dict:
    """Seconds per empty task through :class:`DaskRunner` on two workers (submission to result)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        runner = DaskRunner(client)
        runner.map(_nothing, [(i,) for i in range(100)], "warm-up")
        start = time.perf_counter()
        runner.map(_nothing, [(i,) for i in range(OVERHEAD_TASKS)], "empty")
        return {"seconds_per_task": (time.perf_counter() - start) / OVERHEAD_TASKS}


def _nothing(number: int) -> int:
    return number


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def spawn(args: argparse.Namespace, size: int, workers: int) -> dict:
    command = [
        sys.executable, "-m", "bench.cluster_volume", "--case", str(workers), "--size", str(size),
        "--workdir", args.workdir,
    ]
    if args.test_time_flips is not None:
        command += ["--test-time-flips", args.test_time_flips]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, cwd=REPOSITORY)
    return json.loads(result.stdout.strip().splitlines()[-1])


def same_up_to_renaming(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 512], help="cube sides (multiples of 128)")
    parser.add_argument(
        "--test-time-flips", choices=("on", "off"), help="replace the model's setting (off: 8x less network time)"
    )
    parser.add_argument("--workdir", help="scratch directory (default: a temporary one, removed at the end)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case == "overhead":
        print(json.dumps(scheduler_overhead()))
        return
    if args.case is not None:
        args.workers = int(args.case)
        print(json.dumps(run_case(args)))
        return
    scratch = args.workdir or tempfile.mkdtemp(prefix="spoco-cluster-bench-")
    given_workdir, args.workdir = args.workdir, scratch
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    print("| size | run | total s | voxels/s | speed-up vs 1 worker | client peak MiB | worker peak MiB | tasks | "
          "KiB per task | shared MiB | labels = one process |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    try:
        for size in args.sizes:
            write_input(Path(scratch) / f"image_{size}.zarr", size)
            results = {workers: spawn(args, size, workers) for workers in (0, 1, 2)}
            reference = zarr.open_array(Path(scratch) / f"labels_{size}_0.zarr", mode="r")[:]
            for workers, result in results.items():
                labels = zarr.open_array(Path(scratch) / f"labels_{size}_{workers}.zarr", mode="r")[:]
                if np.array_equal(labels, reference):
                    identical = "yes"
                else:
                    identical = "up to renaming" if same_up_to_renaming(labels, reference) else "NO"
                tasks = result.get("tasks")
                cells = [
                    f"{size}^3",
                    {0: "one process", 1: "1 worker"}.get(workers, f"{workers} workers"),
                    f"{result['total']:.1f}",
                    f"{size**3 / result['total']:.2e}",
                    f"{results[1]['total'] / result['total']:.2f}x",
                    f"{result['client_mib']:.0f}",
                    ", ".join(f"{m:.0f}" for m in result["worker_mib"]) or "-",
                    str(tasks) if tasks else "-",
                    f"{result['task_bytes'] / tasks / 1024:.1f}" if tasks else "-",
                    f"{result['shared_bytes'] / 2**20:.1f}" if tasks else "-",
                    identical,
                ]
                print("| " + " | ".join(cells) + " |", flush=True)
        command = [sys.executable, "-m", "bench.cluster_volume", "--case", "overhead"]
        completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, cwd=REPOSITORY)
        overhead = json.loads(completed.stdout)
        print(f"\nscheduler cost: {overhead['seconds_per_task'] * 1e3:.2f} ms per empty task ({OVERHEAD_TASKS} "
              "tasks, 2 workers)")
        print(f"load average after: {os.getloadavg()}", file=sys.stderr)
    finally:
        if given_workdir is None:
            shutil.rmtree(scratch, ignore_errors=True)

if __name__ == "__main__":
    main()
