"""Training-recipe ablations of dense SPOCO with a foreground channel on DSB2018 fluorescence nuclei.

Run as ``python -m bench.recipe_ablations [--rows base lr-3e-4 ...] [--iterations 1200]`` from the repository
root. Every row changes one thing of the base recipe (``dense+fg`` of ``bench/sparse_dsb.py``: dense labels with
the background as an object, foreground channel of weight 5, Adam lr 1e-3 with cosine decay, 4 patches of
128x128 per step, flips and 90-degree rotations, z-score normalisation, UNet 16..128), trains it for the same
number of iterations with the same seed on ``dsb2018_fluo/train`` and scores the last network on
``dsb2018_fluo/val`` with the bundle's seeded watershed inside the learned foreground (``evaluate.json``). Two
sparse rows train SPOCO@0.1 without and with the foreground channel (positive-unlabeled).

Rows that need another transform list (no flips, scaling) or normalisation are config overlays, written to
``<output-dir>/overlays`` from ``train.json`` itself. Each row is a folder of ``<output-dir>``; a rerun skips the
rows already done (see ``sparse_dsb.run_setting``), so two processes with disjoint ``--rows`` can share the two
cores, and a last run with all rows prints the whole table.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench import peers
from bench import sparse_dsb

_BASE = sparse_dsb.SETTINGS["dense+fg"]


@dataclass(frozen=True)
class Row:
    """One ablation: what it changes, its bundle overrides, its overlay (by name) and its length factor."""

    change: str
    overrides: dict[str, object] = field(default_factory=dict)
    overlay: str | None = None
    length: float = 1.0
    base: dict[str, object] = field(default_factory=lambda: dict(_BASE))


ROWS: dict[str, Row] = {
    "base": Row("base recipe"),
    "half-length": Row("half the iterations", length=0.5),
    "double-length": Row("twice the iterations", length=2.0),
    "constant-lr": Row("constant learning rate (no cosine decay)", {"lr_scheduler#eta_min": "$@learning_rate"}),
    "lr-3e-4": Row("learning rate 3e-4", {"learning_rate": 3e-4}),
    "lr-3e-3": Row("learning rate 3e-3", {"learning_rate": 3e-3}),
    "batch-8": Row("8 patches per step instead of 4", {"patches_per_volume": 8}),
    "no-flips": Row("no flips or 90-degree rotations", overlay="no_flips_rotations"),
    "scaling": Row("random scaling 0.8-1.25 (p 0.5)", overlay="scaling"),
    "percentile-norm": Row("percentile normalisation (1, 99.8) instead of z-score", overlay="percentile_normalisation"),
    "deeper": Row("UNet 16..256, 4 strides", {"network_channels": [16, 32, 64, 128, 256], "network_strides": [2, 2, 2, 2]}),
    "no-instance": Row("single-instance weight 0", {"loss_weights#instance": 0.0}),
    "instance-x3": Row("single-instance weight 3", {"loss_weights#instance": 3.0}),
    "no-consistency": Row("consistency weight 0", {"loss_weights#consistency": 0.0}),
    "consistency-x3": Row("consistency weight 3", {"loss_weights#consistency": 3.0}),
    "foreground-1": Row("foreground weight 1", {"loss_weights#foreground": 1.0}),
    "foreground-20": Row("foreground weight 20", {"loss_weights#foreground": 20.0}),
    "affinity-side": Row(
        "affinity side term, weight 1 (4 random offsets up to 18, delta_d 5)", {"affinity_weight": 1.0}
    ),
    "scaling+affinity-side": Row(
        "random scaling and the affinity side term together", {"affinity_weight": 1.0}, overlay="scaling"
    ),
    "sparse@0.1": Row("SPOCO@0.1, intensity (Otsu) mask", base=dict(sparse_dsb.SETTINGS["spoco@0.1"])),
    "sparse@0.1+fg": Row(
        "SPOCO@0.1, foreground channel (positive-unlabeled)", base=dict(sparse_dsb.SETTINGS["spoco@0.1+fg"])
    ),
}


def _augmentation_steps() -> list[object]:
    return json.loads((sparse_dsb.CONFIGS / "train.json").read_text())["train"]["sparse_and_augment"]


def _without_flips() -> dict[str, object]:
    steps = [s for s in _augmentation_steps() if not isinstance(s, dict) or s["_target_"] not in ("RandAxisFlipd", "RandRotate90d")]
    return {"train#sparse_and_augment": steps}


def _with_scaling() -> dict[str, object]:
    zoom = {
        "_target_": "RandZoomd", "keys": ["image", "label", "foreground"], "allow_missing_keys": True,
        "prob": 0.5, "min_zoom": 0.8, "max_zoom": 1.25, "mode": ["bilinear", "nearest", "nearest"],
        "padding_mode": "reflect", "keep_size": True,
    }
    steps: list[object] = []
    for step in _augmentation_steps():
        steps.append(step)
        if isinstance(step, dict) and step["_target_"] == "RandRotate90d":
            steps += [zoom, {"_target_": "CastToTyped", "keys": "label", "dtype": "$torch.int64"}]
    return {"train#sparse_and_augment": steps}


OVERLAYS = {
    "no_flips_rotations": _without_flips,
    "scaling": _with_scaling,
    "percentile_normalisation": lambda: {
        "normalize_image": {
            "_target_": "ScaleIntensityRangePercentilesd", "keys": "image", "lower": 1.0, "upper": 99.8,
            "b_min": 0.0, "b_max": 1.0, "clip": False,
        }
    },
}


def write_overlay(name: str, folder: Path) -> Path:
    """Write the overlay ``name`` as a bundle config file in ``folder`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    peers.save_json(OVERLAYS[name](), path)
    return path


def markdown_table(results: dict[str, dict[str, object]]) -> str:
    header = ["row", "change", *sparse_dsb.METRICS.values(), "iterations", "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, result in results.items():
        metrics = result["metrics"]["watershed"]
        values = [f"{metrics[key]:{'.1f' if key == 'val_count_difference' else '.3f'}}" for key in sparse_dsb.METRICS]
        lines.append(
            f"| {name} | {ROWS[name].change} | " + " | ".join(values) + f" | {result['iterations']} | {result['train_s']:.0f} |"
        )
    return "\n".join(lines)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--iterations", type=int, default=1200, help="iterations of the base recipe")
    parser.add_argument("--output-dir", type=Path, default=sparse_dsb.REPOSITORY / "bundle" / "runs" / "recipe_ablations")
    parser.add_argument("--data-dir", type=Path, default=sparse_dsb.DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-val-images", type=int, default=None, help="evaluate on the first K val images")
    args = parser.parse_args(argv)
    if args.iterations < 2:
        parser.error(f"--iterations must be >= 2, got {args.iterations}")
    if not (args.data_dir / "train").is_dir():
        parser.error(f"{args.data_dir} holds no train/ folder (expected the dsb2018_fluo data set)")
    # the fields sparse_dsb.run_setting reads
    args.output_dir = args.output_dir.resolve()
    args.learning_rate, args.lr_steps, args.checkpoint_interval, args.clusterings = 1e-3, 10, 200, ["watershed"]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    common = {"dataset_dir": str(args.data_dir.resolve()), "seed": args.seed, "max_validation_images": args.max_val_images}
    results = {}
    for name in args.rows:
        row = ROWS[name]
        overlays = () if row.overlay is None else (write_overlay(row.overlay, args.output_dir / "overlays"),)
        iterations = max(1, round(args.iterations * row.length))
        result = sparse_dsb.run_setting(name, args, common, {**row.base, **row.overrides}, overlays, iterations)
        results[name] = {**result, "iterations": iterations}
        print(f"{name}: trained in {result['train_s']:.0f} s", flush=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nseed {args.seed}, {args.max_val_images or 'all'} validation images, device {device}, load average {load}\n")
    print(markdown_table(results))


if __name__ == "__main__":
    main()
