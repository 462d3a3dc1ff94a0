"""Benchmark of the SPOCO losses on a 3D patch, against a U-Net step and a one-hot formulation.

Run as ``python -m bench.losses`` (options: ``--objects 50 200``, ``--repeats 2``, ``--threads 1``,
``--max-instances N`` and ``--kernel-pixels P`` for SpocoLoss, ``--device cpu|cuda``, ``--case 3d|dsb2d``,
``--clock wall|cpu``). About 5 minutes on 2 idle CPU cores. ``--quality P [P ...]`` instead prints how far
``kernel_pixels`` P moves each term and its gradient from the exact ones (``--draws`` seeds each).

Patch: B=2, E=16, 64x128x128. Labels: Voronoi cells of random seeds (scipy's Euclidean distance transform
gives every voxel its nearest seed); per sample, the requested number of cells are labeled objects and a
third as many extra cells are unlabeled (0), the sparse setting.

Measured, each as forward + backward:
- ``SpocoLoss`` in sparse mode with a teacher (all six terms), against a MONAI
  ``UNet(spatial_dims=3, in_channels=1, out_channels=16, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2))``
  on the same patch (loss: mean of the squared output);
- pull/push/regulariser (``DiscriminativeLoss``, segment sums) against the same terms computed with a
  (objects x pixels) one-hot matrix (means and per-pixel own means as one-hot matrix products).

``--case dsb2d`` instead splits a 2D training step of the DSB2018 setting: a MONAI
``UNet(spatial_dims=2, in_channels=1, out_channels=16, channels=(16, 32, 64, 128), strides=(2, 2, 2),
num_res_units=1, norm="batch")`` on 4 patches of 128x128 (forward + backward, loss: mean of the squared output),
the teacher's forward pass (the same network without gradients), and ``SpocoLoss(sparse=False)`` with teacher
embeddings (forward + backward). Labels: 10-30 random disks (nuclei) per patch on a background that is an object
of its own (dense labels).

Method: every measurement runs in fresh subprocesses, so that no allocation of another measurement is
reused. Time is the best of ``--repeats`` runs in one subprocess (the first run pays one-time costs). Peak
memory is measured in another subprocess, on one run. On CPU it is the Linux peak resident set size of that
run: the peak (VmHWM) is reset through /proc/self/clear_refs before it, and the resident size before it
(inputs already built) is subtracted; glibc is told (MALLOC_MMAP_THRESHOLD_) to return every allocation of
64 KiB or more to the system on free, so freed memory does not hide later peaks (this slows allocations
down, hence the separate subprocess). On CUDA, peak memory is torch.cuda.max_memory_allocated minus the
memory allocated before the run. Ratios are taken
within one run of this script; other processes sharing the CPU make absolute times noisy. Both sides run
with the same number of torch threads (``--threads``, default 1): on a CPU shared with other processes,
OpenMP barriers make many-threaded small operations wait for descheduled threads, which distorts timings.
On such a CPU, ``--clock cpu`` (with ``--device cpu``) times the CPU time of the measuring process
(``time.process_time``) instead of the wall-clock time: time spent descheduled no longer counts, so ratios vary far
less with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

PATCH = (64, 128, 128)
BATCH = 2
EMBEDDING_DIM = 16
DSB_PATCH = (128, 128)
DSB_BATCH = 4


def voronoi_labels(num_objects: int, seed: int) -> np.ndarray:
    """Voronoi cells of random seeds: ``num_objects`` labeled cells (ids 1..) and num_objects // 3 unlabeled (0)."""
    rng = np.random.default_rng(seed)
    num_cells = num_objects + num_objects // 3
    flat_seeds = rng.choice(int(np.prod(PATCH)), size=num_cells, replace=False)
    not_seed = np.ones(PATCH, dtype=bool)
    not_seed.flat[flat_seeds] = False
    cell_of_voxel = np.zeros(PATCH, dtype=np.int64)
    cell_of_voxel.flat[flat_seeds] = np.arange(num_cells)
    nearest = ndimage.distance_transform_edt(not_seed, return_distances=False, return_indices=True)
    cells = cell_of_voxel[tuple(nearest)]
    ids = np.concatenate([rng.permutation(num_objects) + 1, np.zeros(num_cells - num_objects, dtype=np.int64)])
    return ids[cells]


def nuclei_labels(seed: int) -> np.ndarray:
    """Dense 2D labels: background id 1 and 10-30 random disks of radius 4-12 (ids 2..), later disks on top."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices(DSB_PATCH)
    labels = np.ones(DSB_PATCH, dtype=np.int64)
    for index in range(int(rng.integers(10, 31))):
        centre, radius = rng.uniform(0, DSB_PATCH[0], size=2), rng.uniform(4, 12)
        labels[(rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 < radius**2] = index + 2
    return labels


def make_inputs(num_objects: int, device: torch.device, case: str = "3d") -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(num_objects)
    if case == "dsb2d":
        batch, patch = DSB_BATCH, DSB_PATCH
        labels = np.stack([nuclei_labels(seed) for seed in range(batch)])[:, None]
    else:
        batch, patch = BATCH, PATCH
        labels = np.stack([voronoi_labels(num_objects, seed) for seed in range(batch)])[:, None]
    shape = (batch, EMBEDDING_DIM, *patch)
    return {
        "target": torch.from_numpy(labels).to(device),
        "embeddings": torch.randn(shape, generator=generator).to(device).requires_grad_(),
        "teacher": torch.randn(shape, generator=generator).to(device),
        "image": torch.randn((batch, 1, *patch), generator=generator).to(device),
    }


def onehot_discriminative(embeddings: torch.Tensor, target: torch.Tensor, loss: torch.nn.Module) -> torch.Tensor:
    """The terms of ``DiscriminativeLoss`` with means and own means taken through a (B, K, N) one-hot matrix."""
    from spoco_monai.losses.objects import ObjectIndex

    flat = embeddings.flatten(2)
    objects = ObjectIndex.from_target(target.flatten(1))
    slots = torch.arange(objects.num_slots, device=flat.device).view(1, -1, 1)
    onehot = (objects.slots.unsqueeze(1) == slots).to(flat.dtype)
    means = torch.bmm(onehot, flat.transpose(1, 2)) / objects.counts.clamp_min(1).unsqueeze(-1)
    own_means = torch.bmm(means.transpose(1, 2), onehot)
    hinge = (torch.linalg.vector_norm(flat - own_means, dim=1) - loss.delta_var).clamp_min(0.0).square()
    pull_sums = torch.bmm(onehot, hinge.unsqueeze(-1)).squeeze(-1)
    pull, push, reg = loss.terms(objects, means, pull_sums)
    return loss.alpha * pull + loss.beta * push + loss.gamma * reg


def build_step(kind: str, inputs: dict[str, torch.Tensor], device: torch.device, loss_options: dict[str, object]):
    from monai.networks.nets import UNet

    from spoco_monai.losses import DiscriminativeLoss, SpocoLoss

    embeddings, target = inputs["embeddings"], inputs["target"]
    if kind in ("unet2d", "teacher2d"):
        network = UNet(
            2, 1, EMBEDDING_DIM, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1, norm="batch"
        ).to(device)
        if kind == "unet2d":
            return lambda: network(inputs["image"]).square().mean()

        # A scalar with a (trivial) gradient path, so that the common measurement code can call backward.
        anchor = torch.zeros((), device=device, requires_grad=True)

        def teacher_forward() -> torch.Tensor:
            with torch.no_grad():
                network(inputs["image"])
            return anchor * 1.0

        return teacher_forward
    if kind == "spoco2d":
        spoco = SpocoLoss(sparse=False, **loss_options)
        return lambda: spoco(embeddings, target, inputs["teacher"])
    if kind == "unet":
        network = UNet(3, 1, EMBEDDING_DIM, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2)).to(device)
        return lambda: network(inputs["image"]).square().mean()
    if kind == "spoco":
        spoco = SpocoLoss(sparse=True, **loss_options)
        return lambda: spoco(embeddings, target, inputs["teacher"])
    discriminative = DiscriminativeLoss()
    if kind == "pullpush":
        return lambda: discriminative(embeddings, target)
    return lambda: onehot_discriminative(embeddings, target, discriminative)


def loss_options(args: argparse.Namespace) -> dict[str, object]:
    """SpocoLoss's ``max_instances`` and ``kernel_pixels`` of the command line."""
    return {"max_instances": args.max_instances, "kernel_pixels": args.kernel_pixels}


def _resident_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def measure(kind: str, num_objects: int, repeats: int, args: argparse.Namespace) -> dict[str, float]:
    """Best time of ``repeats`` forward + backward steps or, for 0 repeats, the peak extra memory (MiB) of one."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    inputs = make_inputs(num_objects, device, "dsb2d" if kind.endswith("2d") else "3d")
    step = build_step(kind, inputs, device, loss_options(args))

    def run() -> float:
        inputs["embeddings"].grad = None
        loss = step()
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return float(loss.detach())

    if repeats > 0:
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        seconds = []
        for _ in range(repeats):
            start = clock()
            value = run()
            seconds.append(clock() - start)
        return {"seconds": min(seconds), "value": value}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        value = run()
        peak = torch.cuda.max_memory_allocated()
    else:
        before = _resident_kib("VmRSS") * 1024
        Path("/proc/self/clear_refs").write_text("5")
        value = run()
        peak = _resident_kib("VmHWM") * 1024
    return {"peak_mib": (peak - before) / 2**20, "value": value}


def _run_subprocess(kind: str, num_objects: int, args: argparse.Namespace, repeats: int, env: dict) -> dict:
    command = [sys.executable, __file__, "--measure", kind, "--objects", str(num_objects)]
    command += ["--repeats", str(repeats), "--device", args.device, "--threads", str(args.threads)]
    command += ["--clock", args.clock]
    command += [] if args.max_instances is None else ["--max-instances", str(args.max_instances)]
    command += [] if args.kernel_pixels is None else ["--kernel-pixels", str(args.kernel_pixels)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_isolated(kind: str, num_objects: int, args: argparse.Namespace) -> dict[str, float]:
    """Best time of ``args.repeats`` runs in one subprocess, peak memory of one run in another."""
    timed = _run_subprocess(kind, num_objects, args, args.repeats, dict(os.environ))
    memory_env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    measured = _run_subprocess(kind, num_objects, args, 0, memory_env)
    return {"seconds": timed["seconds"], "peak_mib": measured["peak_mib"], "value": timed["value"]}


def dsb_step_split(args: argparse.Namespace) -> None:
    """Print the split of a 2D DSB training step between the network, the teacher and SpocoLoss."""
    print(f"device {args.device}, torch threads {args.threads}, {args.clock} clock, ", end="")
    print(f"2D DSB step: B={DSB_BATCH} E={EMBEDDING_DIM} {DSB_PATCH}, ", end="")
    options = ", ".join(f"{name}={value}" for name, value in loss_options(args).items())
    print(f"dense labels, SpocoLoss(sparse=False, {options}) with teacher embeddings\n")
    network = run_isolated("unet2d", args.objects[0], args)
    teacher = run_isolated("teacher2d", args.objects[0], args)
    loss = run_isolated("spoco2d", args.objects[0], args)
    total = network["seconds"] + teacher["seconds"] + loss["seconds"]
    print("| part | time (s) | share of step | peak (MiB) |")
    print("|---|---|---|---|")
    for name, result in [("U-Net forward + backward", network), ("teacher forward", teacher), ("SpocoLoss", loss)]:
        print(f"| {name} | {result['seconds']:.3f} | {result['seconds'] / total:.0%} | {result['peak_mib']:.0f} |")
    print(f"\nSpocoLoss / U-Net forward + backward: {loss['seconds'] / network['seconds']:.2f}")


def clustered_inputs(num_objects: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The 3D patch's Voronoi labels with embeddings as a trained network gives them: every cell's voxels around a
    centre of its own (centres N(0, 1) per dimension, about 5.7 apart; voxels N(0, 0.1^2) per dimension around it,
    within delta_v of it), the teacher's N(0, 0.05^2) per dimension from the student's."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.from_numpy(np.stack([voronoi_labels(num_objects, s) for s in range(BATCH)])[:, None])
    # every voxel takes the centre of its label; the unlabeled cells (id 0) share one
    centres = torch.randn(BATCH, num_objects + 1, EMBEDDING_DIM, generator=generator)
    embeddings = centres.gather(1, labels.flatten(1).unsqueeze(-1).expand(-1, -1, EMBEDDING_DIM)).transpose(1, 2)
    embeddings = embeddings.reshape(BATCH, EMBEDDING_DIM, *PATCH)
    embeddings = embeddings + 0.1 * torch.randn(embeddings.shape, generator=generator)
    teacher = embeddings + 0.05 * torch.randn(embeddings.shape, generator=generator)
    return {"target": labels, "embeddings": embeddings.requires_grad_(), "teacher": teacher}


#: The terms :func:`kernel_pixel_quality` compares, by the SpocoLoss weights that leave each alone.
_ALONE = {"alpha": 0.0, "beta": 0.0, "gamma": 0.0, "instance_weight": 0.0, "unlabeled_weight": 0.0}
QUALITY_TERMS = {
    "single-instance": {**_ALONE, "instance_weight": 1.0, "consistency_weight": 0.0},
    "unlabeled push": {**_ALONE, "unlabeled_weight": 1.0, "consistency_weight": 0.0},
    "consistency": _ALONE,
    "all terms": {},
}


def kernel_pixel_quality(args: argparse.Namespace) -> None:
    """Print, per ``kernel_pixels`` and term, the loss / exact loss and the cosine between their gradients.

    Each estimate is compared with the exact loss of the same seed: the single-instance term then has the same
    anchors and objects, the unlabeled push is not random, and the consistency term draws its anchors among the
    drawn pixels, so its anchors differ. The first row compares exact losses of two seeds: how far the random
    anchors alone move the loss and its gradient.
    """
    from spoco_monai.losses import SpocoLoss

    torch.set_num_threads(args.threads)
    inputs = clustered_inputs(args.objects[0])
    embeddings = inputs["embeddings"]

    def evaluate(weights: dict[str, float], kernel_pixels: int | None, seed: int) -> tuple[float, torch.Tensor, float]:
        loss = SpocoLoss(max_instances=args.max_instances, kernel_pixels=kernel_pixels, seed=seed, **weights)
        start = time.process_time()
        value = loss(embeddings, inputs["target"], inputs["teacher"])
        gradient = torch.autograd.grad(value, embeddings)[0].flatten()
        return float(value.detach()), gradient, time.process_time() - start

    def cell(pairs: list[tuple[tuple[float, torch.Tensor, float], tuple[float, torch.Tensor, float]]]) -> str:
        ratios = np.array([estimate[0] / exact[0] for estimate, exact in pairs])
        cosines = np.array([float(torch.cosine_similarity(estimate[1], exact[1], dim=0)) for estimate, exact in pairs])
        seconds = np.median([estimate[2] for estimate, _ in pairs])
        return f"{ratios.mean():.3f}, {cosines.mean():.2f}, {seconds:.2f}"

    rows: dict[str, list[str]] = {}
    for weights in QUALITY_TERMS.values():
        exact = [evaluate(weights, None, seed) for seed in range(args.draws)]
        rows.setdefault("exact, another seed", []).append(cell(list(zip(exact[1:] + exact[:1], exact))))
        for kernel_pixels in args.quality:
            estimates = [evaluate(weights, kernel_pixels, seed) for seed in range(args.draws)]
            rows.setdefault(str(kernel_pixels), []).append(cell(list(zip(estimates, exact))))
    print(f"patch B={BATCH} E={EMBEDDING_DIM} {PATCH} ({int(np.prod(PATCH))} voxels), {args.objects[0]} objects, ")
    print(f"clustered embeddings, max_instances={args.max_instances}, {args.draws} seeds per cell; each cell: loss / ")
    print("exact loss, gradient cosine with the exact gradient (means over the seeds), CPU s of forward + backward\n")
    print("| `kernel_pixels` | " + " | ".join(QUALITY_TERMS) + " |")
    print("|---" * (len(QUALITY_TERMS) + 1) + "|")
    for name, cells in rows.items():
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-instances", type=int, default=None, help="SpocoLoss max_instances (default: all)")
    parser.add_argument("--kernel-pixels", type=int, default=None, help="SpocoLoss kernel_pixels (default: exact)")
    parser.add_argument("--quality", type=int, nargs="+", help="instead: the estimate's error at these kernel_pixels")
    parser.add_argument("--draws", type=int, default=4, help="loss seeds per cell of --quality")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--case", choices=["3d", "dsb2d"], default="3d", help="3D patch table or 2D DSB step split")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall-clock or process CPU time")
    kinds = ["unet", "spoco", "pullpush", "onehot", "unet2d", "teacher2d", "spoco2d"]
    parser.add_argument("--measure", choices=kinds, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clock == "cpu" and args.device != "cpu":
        parser.error(f"--clock cpu measures CPU time and needs --device cpu, found --device {args.device}.")
    if args.measure:
        print(json.dumps(measure(args.measure, args.objects[0], args.repeats, args)))
        return
    if args.quality:
        kernel_pixel_quality(args)
        return
    if args.case == "dsb2d":
        dsb_step_split(args)
        return
    unet = run_isolated("unet", args.objects[0], args)
    print(f"device {args.device}, torch threads {args.threads}, {args.clock} clock, ", end="")
    print(f"patch B={BATCH} E={EMBEDDING_DIM} {PATCH}, ", end="")
    print("SpocoLoss " + ", ".join(f"{name}={value}" for name, value in loss_options(args).items()))
    print(f"U-Net step: {unet['seconds']:.2f} s, peak {unet['peak_mib']:.0f} MiB\n")
    print(
        "| objects | SpocoLoss step (s) | / U-Net step | SpocoLoss peak (MiB) | / U-Net peak "
        "| pull/push step (s) | one-hot step (s) | pull/push peak (MiB) | one-hot peak (MiB) | one-hot / ours |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for num_objects in args.objects:
        spoco = run_isolated("spoco", num_objects, args)
        ours = run_isolated("pullpush", num_objects, args)
        onehot = run_isolated("onehot", num_objects, args)
        if not np.isclose(ours["value"], onehot["value"], rtol=1e-4):
            raise RuntimeError(f"one-hot and segment-sum losses differ: {onehot['value']} vs {ours['value']}")
        print(
            f"| {num_objects} | {spoco['seconds']:.2f} | {spoco['seconds'] / unet['seconds']:.2f} "
            f"| {spoco['peak_mib']:.0f} | {spoco['peak_mib'] / unet['peak_mib']:.2f} "
            f"| {ours['seconds']:.2f} | {onehot['seconds']:.2f} | {ours['peak_mib']:.0f} "
            f"| {onehot['peak_mib']:.0f} | {onehot['peak_mib'] / ours['peak_mib']:.1f} |",
            flush=True,
        )
    print("\nGoals: SpocoLoss step <= 0.5 x U-Net step at 200 objects; one-hot / ours >= 10 at 200 objects.")


if __name__ == "__main__":
    main()
