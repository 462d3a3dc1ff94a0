"""Sparse-supervision experiment on the DSB2018 fluorescence nuclei (dsb2018_fluo), driven through the bundle.

Run as ``python -m bench.sparse_dsb [--iterations N] [--max-val-images K] [--settings spoco@0.1 disc ...]``
from the repository root. Every setting trains the same 2D UNet (``bundle/configs/dsb2018_2d.json`` layered on
``train.json``) for the same number of iterations with the same seed on ``dsb2018_fluo/train``; only the
annotation and the loss terms differ:

* ``spoco@0.1``, ``spoco@0.4``, ``spoco@1.0``: SPOCO on that fraction of the objects of every image
  (positive-unlabeled: the rest of the image is unlabeled);
* ``dense``: SPOCO with full labels and the background as an object of its own;
* ``dense+fg``: ``dense`` with the foreground channel (loss weight 5) at learning rate 1e-3, the recipe of the
  shipped ``dsb2018_nuclei_2d`` model;
* ``spoco@0.1+fg``: ``spoco@0.1`` with the foreground channel (loss weight 5), learned from the labeled nuclei
  and the unlabeled pixels (positive-unlabeled, with the foreground prior that the fraction 0.1 implies);
* ``disc``: the discriminative loss alone on full labels with the background as an object;
* ``spoco@0.1-nocons``: ``spoco@0.1`` without the embedding consistency term.

The network of the last iteration of each setting is then evaluated on ``dsb2018_fluo/val`` at native
resolution (each image through the network whole) by ``evaluate.json``, clustered with the bundle's seeded
watershed, the Mutex Watershed and HDBSCAN inside the foreground mask of ``dsb2018_2d.json`` (the network's
learned foreground for the dense settings, the Otsu threshold of the image for the sparse ones). With ``--peers``, the baselines of
``bench/peers.py`` (classical Otsu watershed, three-class U-Nets on all images or on few whole images) are trained
for the wall-clock time of this run's ``dense`` training (or ``--peer-budget-s``) and added to the table. The table lists the symmetric best Dice (SBD), the absolute difference in count (|DiC|), the
average precision at IoU 0.5 (AP@0.5) and the mean average precision over IoU 0.5..0.95 (mAP), averaged over
the images, and the mAP relative to the ``dense`` setting of the same run and clustering (when it ran).

Each step is a ``python -m monai.bundle run`` subprocess, run one after another in the foreground; its log goes
to ``<output-dir>/<setting>/*.log`` and its wall-clock time to ``<output-dir>/<setting>/timings.json``. A rerun
skips the steps already recorded there, and training resumes from the newest checkpoint of an interrupted run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench import peers
from spoco_monai.data.atomic import write_atomically

REPOSITORY = Path(__file__).resolve().parents[1]
CONFIGS = REPOSITORY / "bundle" / "configs"
TRAIN_CONFIGS = [CONFIGS / "common.json", CONFIGS / "train.json", CONFIGS / "dsb2018_2d.json"]
EVALUATE_CONFIGS = [*TRAIN_CONFIGS, CONFIGS / "evaluate.json"]
DEFAULT_DATA = REPOSITORY.parent / "shared" / "data" / "dsb2018_fluo"

_DENSE = {"sparse": False, "sparse_fraction": 1.0, "keep_background": True}
_NO_SPOCO_TERMS = {"loss_weights#instance": 0.0, "loss_weights#unlabeled": 0.0, "loss_weights#consistency": 0.0}
SETTINGS: dict[str, dict[str, object]] = {
    "spoco@0.1": {"sparse_fraction": 0.1},
    "spoco@0.4": {"sparse_fraction": 0.4},
    "spoco@1.0": {"sparse_fraction": 1.0},
    "dense": _DENSE,
    "dense+fg": {**_DENSE, "foreground_head": True, "loss_weights#foreground": 5.0, "learning_rate": 0.001},
    # the same with 8 full-resolution channels and channels-last networks: a cheaper training step
    "dense+fg+head8": {
        **_DENSE, "foreground_head": True, "loss_weights#foreground": 5.0, "learning_rate": 0.001, "head_channels": 8,
        "channels_last": True,
    },
    "spoco@0.1+fg": {"sparse_fraction": 0.1, "foreground_head": True, "loss_weights#foreground": 5.0},
    "disc": {**_DENSE, **_NO_SPOCO_TERMS},
    "spoco@0.1-nocons": {"sparse_fraction": 0.1, "loss_weights#consistency": 0.0},
}
BASELINE = "dense"
# "watershed" is the bundle's clustering of dsb2018_2d.json: seeds at the maxima of the foreground's distance map,
# grown over the borders of the blended affinities (spoco_monai.clustering.seeded_watershed_from_affinities).
# "MWS" is the Mutex Watershed on the same affinities and foreground, with the offsets of the nuclei's scale.
# HDBSCAN clusters the foreground pixels' blended embeddings, then splits every cluster into its spatially
# connected pieces (distant nuclei may share an embedding) and merges pieces under 30 pixels into their most
# similar neighbour; 30 was the best of 15, 30, 50 and 80 on 8 validation images with the SPOCO@0.1 network.
CLUSTERINGS: dict[str, dict[str, object]] = {
    "watershed": {},
    "MWS": {"clustering": "mws", "clustering_kwargs": {"min_size": 15, "strides": [2, 2]}},
    "HDBSCAN": {
        "segmentation#blend": "embeddings",
        "clustering": "hdbscan",
        "clustering_kwargs": {"min_size": 30, "split_connected": True},
    },
}
PEER_METHODS = {
    "classical": "Otsu + distance watershed",
    "unet3": "3-class U-Net, dense, watershed",
    "unet3-few": "3-class U-Net, few whole images, watershed",
}
METRICS = {"val_sbd": "SBD", "val_count_difference": r"\|DiC\|", "val_ap50": "AP@0.5", "val_map": "mAP"}


def _override_arguments(overrides: dict[str, object]) -> list[str]:
    # monai.bundle parses each value as a Python literal, so booleans must be spelled True/False
    arguments: list[str] = []
    for name, value in overrides.items():
        arguments += [f"--{name}", json.dumps(value) if isinstance(value, (dict, list)) else str(value)]
    return arguments


def _run_bundle(configs: list[Path], overrides: dict[str, object], log_path: Path) -> float:
    """Run ``python -m monai.bundle run`` on ``configs`` with ``overrides``; return its wall-clock seconds."""
    command = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", repr([str(path) for path in configs]),
        *_override_arguments(overrides),
    ]
    start = time.perf_counter()
    with log_path.open("w") as log:
        completed = subprocess.run(command, cwd=REPOSITORY, stdout=log, stderr=subprocess.STDOUT, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"bundle run failed (exit code {completed.returncode}); see {log_path}")
    return time.perf_counter() - start


def _final_network(checkpoint_dir: Path, iterations: int) -> Path:
    """Write the student network of the final checkpoint as a plain state dict and return its path."""
    checkpoint = checkpoint_dir / f"checkpoint_final_iteration={iterations}.pt"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"expected the final checkpoint {checkpoint} after training")
    network_path = checkpoint_dir / "final_network.pt"
    torch.save(torch.load(checkpoint, weights_only=True)["network"], network_path)
    return network_path


def _read_metrics(metrics_csv: Path) -> dict[str, float]:
    with metrics_csv.open() as handle:
        return {row[0]: float(row[1]) for row in csv.reader(handle) if row}


def _load_timings(path: Path) -> dict[str, object]:
    return json.loads(path.read_text()) if path.is_file() else {"eval_s": {}}


def _save_timings(path: Path, timings: dict[str, object]) -> None:
    with write_atomically(path) as temporary:
        temporary.write_text(json.dumps(timings, indent=2))


def run_setting(
    name: str,
    args: argparse.Namespace,
    common: dict[str, object],
    overrides: dict[str, object] | None = None,
    overlays: tuple[Path, ...] = (),
    iterations: int | None = None,
) -> dict[str, object]:
    """Train one setting and evaluate it with every clustering; return timings and metrics per clustering.

    ``overrides`` (default: ``SETTINGS[name]``) are the setting's bundle values, ``overlays`` config files
    layered on the training and evaluation configs, and ``iterations`` (default ``args.iterations``) its length.
    A step whose result is already recorded in ``<setting>/timings.json`` (with its final checkpoint or
    ``metrics.csv`` in place) is not run again, so a rerun finishes an interrupted table, and deleting an
    ``evaluate_<clustering>`` folder re-evaluates just that clustering.
    """
    overrides = SETTINGS[name] if overrides is None else overrides
    iterations = args.iterations if iterations is None else iterations
    folder = args.output_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    timings_path = folder / "timings.json"
    timings = _load_timings(timings_path)
    checkpoint = folder / "checkpoints" / f"checkpoint_final_iteration={iterations}.pt"
    if "train_s" not in timings or not checkpoint.is_file():
        train_overrides = {
            **common, "learning_rate": args.learning_rate, **overrides, "output_dir": str(folder),
            "num_iterations": iterations, "val_interval": max(1, iterations // args.lr_steps),
            "checkpoint_interval": args.checkpoint_interval, "run_validation": False,
        }
        log_path = folder / "train.log"
        timings = {"train_s": _run_bundle([*TRAIN_CONFIGS, *overlays], train_overrides, log_path), "eval_s": {}}
        _save_timings(timings_path, timings)
    network_path = _final_network(folder / "checkpoints", iterations)
    metrics: dict[str, dict[str, float]] = {}
    for clustering in args.clusterings:
        clustering_overrides = CLUSTERINGS[clustering]
        evaluation = folder / f"evaluate_{clustering.lower()}"
        if clustering not in timings["eval_s"] or not (evaluation / "metrics.csv").is_file():
            # the setting's own overrides decide the network (a foreground channel with dense labels) and its mask
            evaluate_overrides = {
                **common, **overrides, **clustering_overrides, "output_dir": str(evaluation),
                "model_path": str(network_path),
            }
            log_path = folder / f"{evaluation.name}.log"
            timings["eval_s"][clustering] = _run_bundle([*EVALUATE_CONFIGS, *overlays], evaluate_overrides, log_path)
            _save_timings(timings_path, timings)
        metrics[clustering] = _read_metrics(evaluation / "metrics.csv")
    return {**timings, "metrics": metrics}


def markdown_table(results: dict[str, dict[str, object]], peer_results: dict[str, dict] | None = None) -> str:
    """The results as a markdown table: one row per setting and clustering, then one per peer."""
    header = ["setting", "clustering", *METRICS.values(), f"mAP / {BASELINE}", "train s", "eval s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, result in results.items():
        for clustering, metrics in result["metrics"].items():
            baseline = results.get(BASELINE, {}).get("metrics", {}).get(clustering, {}).get("val_map")
            ratio = f"{metrics['val_map'] / baseline:.2f}" if baseline else "n/a"
            values = [f"{metrics[key]:{'.1f' if key == 'val_count_difference' else '.3f'}}" for key in METRICS]
            lines.append(
                f"| {name} | {clustering} | " + " | ".join(values)
                + f" | {ratio} | {result['train_s']:.0f} | {result['eval_s'][clustering]:.0f} |"
            )
    for name, result in (peer_results or {}).items():
        baseline = results.get(BASELINE, {}).get("metrics", {}).get(next(iter(CLUSTERINGS)), {}).get("val_map")
        ratio = f"{result['map'] / baseline:.2f}" if baseline else "n/a"
        lines.append(
            f"| peer: {name} | {PEER_METHODS[name]} | {result['sbd']:.3f} | {result['dic']:.1f} | {result['ap50']:.3f} | "
            f"{result['map']:.3f} | {ratio} | {result['train_s']:.0f} | {result['eval_s']:.0f} |"
        )
    return "\n".join(lines)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=3000, help="training iterations of every setting")
    parser.add_argument("--max-val-images", type=int, default=None, help="evaluate on the first K val images")
    parser.add_argument("--output-dir", type=Path, default=REPOSITORY / "bundle" / "runs" / "sparse_dsb")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="dsb2018_fluo folder (train/, val/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--lr-steps", type=int, default=10, help="cosine learning-rate steps over the run")
    parser.add_argument("--checkpoint-interval", type=int, default=500)
    parser.add_argument("--clusterings", nargs="+", default=list(CLUSTERINGS), choices=list(CLUSTERINGS))
    parser.add_argument("--peers", nargs="*", default=[], choices=list(PEER_METHODS), help="baselines to add")
    parser.add_argument(
        "--peer-budget-s", type=float, default=None, help="U-Net peers' training seconds (default: dense's)"
    )
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error(f"--iterations must be >= 1, got {args.iterations}")
    if args.max_val_images is not None and args.max_val_images < 1:
        parser.error(f"--max-val-images must be >= 1, got {args.max_val_images}")
    if not (args.data_dir / "train").is_dir():
        parser.error(f"{args.data_dir} holds no train/ folder (expected the dsb2018_fluo data set)")
    args.output_dir = args.output_dir.resolve()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    common = {
        "dataset_dir": str(args.data_dir.resolve()),
        "seed": args.seed,
        "max_validation_images": args.max_val_images,
    }
    results = {}
    for name in args.settings:
        results[name] = run_setting(name, args, common)
        print(f"{name}: trained in {results[name]['train_s']:.0f} s", flush=True)
    peer_results = run_peer_baselines(args, results) if args.peers else None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n{args.iterations} iterations, seed {args.seed}, {args.max_val_images or 'all'} validation images, "
          f"device {device}, load average {load}\n")
    print(markdown_table(results, peer_results))


def run_peer_baselines(args: argparse.Namespace, results: dict[str, dict[str, object]]) -> dict[str, dict]:
    """Train and score the peers of ``bench/peers.py`` with the training time of this run's dense setting."""
    budget = args.peer_budget_s
    if budget is None:
        if BASELINE not in results:
            raise SystemExit(f"--peers needs --peer-budget-s or the {BASELINE!r} setting to take its training time")
        budget = float(results[BASELINE]["train_s"])
    peer_arguments = [
        "--peers", *args.peers, "--seed", str(args.seed), "--budget-s", f"{budget:.0f}",
        "--output-dir", str(args.output_dir / "peers"), "--data-dir", str(args.data_dir),
    ]
    if args.max_val_images:
        peer_arguments += ["--max-val-images", str(args.max_val_images)]
    return peers.run_peers(args.peers, peers.parse_arguments(peer_arguments))


if __name__ == "__main__":
    main()
