"""Whole-volume inference: ``spoco_monai.inferers.segment_volume`` against MONAI's ``sliding_window_inference``.

One run, one network (a small MONAI 3D UNet with 16 output channels, fixed seed), one window size and
overlap. MONAI produces the embeddings of the whole volume in memory (no clustering); ours reads the
volume lazily from zarr (whole chunks, each decoded about once), blends per-window affinities block by
block, runs the Mutex Watershed per block, stitches and writes the labels to zarr. Every case runs in its
own subprocess; its peak resident memory is that child's ``ru_maxrss`` (``os.wait4``). Where both methods
run, each case runs ``--repeats`` times and the fastest run is reported (peak RSS: the largest). The input is a synthetic membrane volume (128^3, tiled).

    python -m bench.volume                      # 128^3 and 256^3 (both methods), 512^3 (ours)
    python -m bench.volume --sizes 128 256      # selected sizes; MONAI runs up to --monai-max-size
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr
from monai.inferers import sliding_window_inference
from monai.networks.nets import UNet

from spoco_monai.data.synthetic import make_synthetic_volume
from spoco_monai.inferers import SegmentationSettings, segment_volume

TILE = 128


def build_network(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return UNet(3, 1, 16, channels=(8, 16, 32), strides=(2, 2), num_res_units=0).eval()


def write_input(path: Path, size: int) -> None:
    image, _ = make_synthetic_volume((TILE,) * 3, seed=0)
    array = zarr.create_array(store=path, shape=(1, size, size, size), chunks=(1, TILE, TILE, TILE), dtype="float32")
    for z in range(0, size, TILE):
        for y in range(0, size, TILE):
            for x in range(0, size, TILE):
                array[:, z : z + TILE, y : y + TILE, x : x + TILE] = image


def run_case(args: argparse.Namespace) -> dict[str, float | None]:
    """One measurement, in this (child) process."""
    torch.set_num_threads(args.threads)
    network = build_network(args.seed)
    roi = (args.roi,) * 3
    with torch.no_grad():
        network(torch.zeros(args.sw_batch_size, 1, *roi))  # warm-up, outside the timings
    image_path = Path(args.workdir) / f"image_{args.size}.zarr"
    if args.case == "monai":
        start = time.perf_counter()
        image = torch.from_numpy(np.asarray(zarr.open_array(image_path, mode="r")[:]))[None]
        with torch.no_grad():
            embeddings = sliding_window_inference(
                image, roi, args.sw_batch_size, network, overlap=args.overlap, mode="gaussian"
            )
        total = time.perf_counter() - start
        assert embeddings.shape == (1, 16, *(args.size,) * 3)
        return {"network": total, "affinities": None, "clustering": None, "writing": None, "total": total}
    timings: dict[str, float] = {}
    start = time.perf_counter()
    settings = SegmentationSettings(
        roi, overlap=args.overlap, block_shape=args.block if len(args.block) > 1 else args.block[0],
        sw_batch_size=args.sw_batch_size,
        clustering_kwargs={"strides": [args.mws_stride] * 3},
    )
    segment_volume(
        str(image_path), network, settings, output=str(Path(args.workdir) / f"labels_{args.size}.zarr"),
        overwrite=True, progress=False, timings=timings,
    )
    return {**timings, "total": time.perf_counter() - start}


def spawn(args: argparse.Namespace, case: str, size: int) -> dict[str, float | None]:
    command = [
        sys.executable, __file__, "--case", case, "--size", str(size), "--workdir", args.workdir,
        "--roi", str(args.roi), "--overlap", str(args.overlap), "--block", *map(str, args.block),
        "--sw-batch-size", str(args.sw_batch_size), "--threads", str(args.threads),
        "--mws-stride", str(args.mws_stride), "--seed", str(args.seed),
    ]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS, not the maximum over all children
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"case {case} at {size}^3 failed with status {child.returncode}")
    return {**json.loads(output.strip().splitlines()[-1]), "rss_mib": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256, 512], help="cube sides (multiples of 128)")
    parser.add_argument("--monai-max-size", type=int, default=256, help="largest side MONAI runs at")
    parser.add_argument("--repeats", type=int, default=2, help="runs per case where both methods run (fastest kept)")
    parser.add_argument("--roi", type=int, default=64, help="window side")
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument(
        "--block", type=int, nargs="+", default=[96, 96, 48],
        help="block core of ours, one side or one per axis (rounded to window steps); the default holds 2x2x1 "
        "windows, so they fill batches of two",
    )
    parser.add_argument("--sw-batch-size", type=int, default=2)
    parser.add_argument("--mws-stride", type=int, default=2, help="Mutex Watershed stride of the mutex edges")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per case (default 1: stable on a shared machine)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="scratch directory (default: a temporary one, removed at the end)")
    parser.add_argument("--case", choices=("monai", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args)))
        return
    if any(size % TILE for size in args.sizes):
        parser.error(f"sizes must be multiples of {TILE}, got {args.sizes}")
    scratch = args.workdir is None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="spoco-bench-volume-")
    try:
        rows = []
        for size in sorted(args.sizes):
            write_input(Path(args.workdir) / f"image_{size}.zarr", size)
            cases = ["monai", "ours"] if size <= args.monai_max_size else ["ours"]
            # alternating repeats see similar background load; the fastest run of each case is reported
            repeats = args.repeats if len(cases) > 1 else 1
            runs = [(case, spawn(args, case, size)) for _ in range(repeats) for case in cases]
            for case in cases:
                mine = [run for name, run in runs if name == case]
                best = min(mine, key=lambda run: run["total"])
                rows.append({"size": size, "case": case, **best, "rss_mib": max(run["rss_mib"] for run in mine)})
                print(f"  done: {case} {size}^3, fastest of {len(mine)}: {best['total']:.1f} s", file=sys.stderr)
    finally:
        if scratch:
            shutil.rmtree(args.workdir, ignore_errors=True)
    print_table(rows, args)


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    print(
        "\nnetwork: reading, forward passes and Gaussian blending (MONAI: its whole sliding_window_inference); "
        "affinities: ours' per-window embedding-to-affinity conversion"
    )
    print(
        f"roi {args.roi}^3, overlap {args.overlap}, sw_batch_size {args.sw_batch_size}, "
        f"block {'x'.join(map(str, args.block))}, "
        f"MWS mutex stride {args.mws_stride}, {args.threads} torch threads; UNet(8, 16, 32) -> 16 channels\n"
    )
    print(
        "| size | method | network s | affinities s | clustering s | stitch+write s | total s | peak RSS MiB "
        "| voxels/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        voxels = row["size"] ** 3
        method = "MONAI sliding_window_inference" if row["case"] == "monai" else "spoco segment_volume (zarr in/out)"
        print(
            f"| {row['size']}^3 | {method} | {seconds(row['network'])} | {seconds(row['affinities'])} | "
            f"{seconds(row['clustering'])} | "
            f"{seconds(row['writing'])} | {row['total']:.1f} | {row['rss_mib']:.0f} | {voxels / row['total']:.3g} |"
        )
    by_case = {(row["case"], row["size"]): row for row in rows}
    print("\n| ratio | value | goal |")
    print("|---|---|---|")
    for size in sorted({row["size"] for row in rows}):
        if ("monai", size) in by_case and ("ours", size) in by_case:
            ours, monai = by_case[("ours", size)], by_case[("monai", size)]
            print(f"| network time ours / MONAI at {size}^3 | {ours['network'] / monai['network']:.2f} | <= 1.1 |")
            with_affinities = (ours["network"] + ours["affinities"]) / monai["network"]
            print(f"| (network + per-window affinities) ours / MONAI at {size}^3 | {with_affinities:.2f} | - |")
            print(f"| peak RSS ours / MONAI at {size}^3 | {ours['rss_mib'] / monai['rss_mib']:.2f} | <= 0.5 at 256^3 |")
            print(f"| end-to-end voxels/s ours at {size}^3 (labels written) | {size**3 / ours['total']:.3g} | - |")
    if ("ours", 128) in by_case and ("ours", 512) in by_case:
        small, large = by_case[("ours", 128)], by_case[("ours", 512)]
        print(f"| ours peak RSS 512^3 / 128^3 | {large['rss_mib'] / small['rss_mib']:.2f} | <= 1.5 |")
        per_voxel = (large["total"] / 512**3) / (small["total"] / 128**3)
        print(f"| ours time per voxel 512^3 / 128^3 | {per_voxel:.2f} | <= 1.5 |")


if __name__ == "__main__":
    main()
