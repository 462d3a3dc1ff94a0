"""Ablation of the adversarial mask term: the same training budget with and without the critic.

Run as ``python -m bench.adversarial [--data synthetic|ovule] [--iterations N] [--seed S] [--critic-channels ...]``
from the repository root. Two settings train the bundle's 3D UNet through ``monai.bundle.ConfigWorkflow`` for the
same number of iterations, with the same seed, data, patches and SPOCO loss:

* ``SPOCO``: ``train.json`` (with the data overlay);
* ``SPOCO + critic``: the same, with ``adversarial.json`` layered on top (WGAN-GP critic of the single-instance
  soft masks; its widths, warm-up and weight from the options below, the rest from the overlay's defaults).

Both runs draw the same batches (the critic steps reuse each iteration's batch), so they differ only by the critic.
After the last iteration the final network is validated once by the bundle's validation (sliding windows, Mutex
Watershed): adapted Rand error (lower is better) and symmetric best Dice (SBD) of the validation volume. Data:

* ``synthetic`` (default): ``spoco_monai.data.write_synthetic_dataset`` writes ``--volumes`` membrane volumes of
  ``--volume-shape`` to ``<output-dir>/data`` (the last one held out for validation), SPOCO@``--sparse-fraction``;
* ``ovule``: ``lm3d_membranes.json``, the PlantSeg ovule sample in ``../shared/data/lm3d``, trained on the first
  64 X columns with all cells labeled and reported on the other 64 (the overlay's disjoint halves).

The wall time is that of the training alone (validation excluded), with ``--threads`` torch threads. Each setting
writes to ``<output-dir>/<setting>`` and starts afresh (no resume). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from monai.bundle import ConfigWorkflow

from spoco_monai.data import write_synthetic_dataset

REPOSITORY = Path(__file__).resolve().parents[1]
CONFIGS = REPOSITORY / "bundle" / "configs"
DATA_OVERLAYS = {"synthetic": [], "ovule": ["lm3d_membranes"]}


def train_and_validate(configs: list[str], overrides: dict[str, object]) -> dict[str, float]:
    """Train the bundle workflow of ``configs`` with ``overrides`` and validate its last network once.

    Returns:
        ``adapted_rand_error``, ``sbd``, ``wall_time_s`` (training only) and ``iterations``.
    """
    flow = ConfigWorkflow(config_file=[str(CONFIGS / f"{name}.json") for name in ("common", *configs)], workflow_type=None,
                          **overrides)
    flow.initialize()
    trainer = flow.parser.get_parsed_content("train#trainer")
    evaluator = flow.parser.get_parsed_content("validate#evaluator")
    start = time.perf_counter()
    flow.run()
    wall_time = time.perf_counter() - start - evaluator.state.times.get("COMPLETED", 0.0)
    return {
        "adapted_rand_error": evaluator.state.metrics["val_adapted_rand_error"],
        "sbd": evaluator.state.metrics["val_sbd"],
        "wall_time_s": wall_time,
        "iterations": trainer.state.iteration,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(DATA_OVERLAYS), default="synthetic")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--critic-channels", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--warmup", type=int, default=None, help="iterations before the term enters (overlay: 10%%)")
    parser.add_argument("--adversarial-weight", type=float, default=0.1)
    parser.add_argument("--max-instances", type=int, default=64, help="objects per sample of the instance term")
    parser.add_argument("--patch-size", type=int, nargs=3, default=[32, 64, 64])
    parser.add_argument("--sparse-fraction", type=float, default=0.4, help="synthetic data only")
    parser.add_argument("--volumes", type=int, default=3, help="synthetic volumes, the last one for validation")
    parser.add_argument("--volume-shape", type=int, nargs=3, default=[48, 128, 128])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output-dir", type=Path, default=REPOSITORY / "bundle" / "runs" / "bench_adversarial")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    common: dict[str, object] = {
        "seed": args.seed, "num_iterations": args.iterations, "val_interval": args.iterations,
        "checkpoint_interval": args.iterations, "resume": False, "num_workers": 0,
        "patch_size": args.patch_size, "max_instances": args.max_instances,
    }
    if args.data == "synthetic":
        data = args.output_dir / "data"
        write_synthetic_dataset(data, n_volumes=args.volumes, shape=args.volume_shape, seed=args.seed,
                                validation_fraction=1.0 / args.volumes)
        common.update(dataset_dir=str(data), sparse_fraction=args.sparse_fraction)
    adversarial: dict[str, object] = {
        "critic_channels": args.critic_channels, "adversarial_weight": args.adversarial_weight,
    }
    if args.warmup is not None:
        adversarial["adversarial_warmup"] = args.warmup
    settings = {
        "SPOCO": (["train", *DATA_OVERLAYS[args.data]], {}),
        "SPOCO + critic": (["train", *DATA_OVERLAYS[args.data], "adversarial"], adversarial),
    }
    rows = []
    for name, (configs, extra) in settings.items():
        folder = args.output_dir / name.replace(" + ", "_").replace(" ", "_").lower()
        result = train_and_validate(configs, {**common, **extra, "output_dir": str(folder)})
        rows.append((name, result))

    print(f"data {args.data}, patch {args.patch_size}, critic widths {args.critic_channels}, "
          f"weight {args.adversarial_weight}, torch threads {args.threads}\n")
    print("| setting | adapted Rand error | SBD | wall time (s) | iterations | seed |")
    print("|---|---|---|---|---|---|")
    for name, result in rows:
        print(f"| {name} | {result['adapted_rand_error']:.3f} | {result['sbd']:.3f} | {result['wall_time_s']:.0f} "
              f"| {result['iterations']} | {args.seed} |")


if __name__ == "__main__":
    main()
