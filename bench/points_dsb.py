"""Clicks, scribbles, sparse and dense masks on DSB2018 nuclei: accuracy against the annotator's time.

Run as ``python -m bench.points_dsb [--iterations 3000] [--rows ...] [--max-val-images K]`` from the repository
root. Every trained row trains the same 2D UNet of ``bundle/configs/dsb2018_2d.json`` through the bundle for the
same number of iterations with the same seed on ``dsb2018_fluo/train``, from an annotation simulated on its dense
labels; only the annotation (and what it trains) differs:

* ``points@1.0``: one click at the centre of every nucleus (``points_model.json`` + ``points.json``: SPOCO on masks
  grown from the clicks, ``GrowFromPointsd``, plus a localisation channel trained by the LCFCN terms); segmented by
  the ``"points"`` clustering (seeds at the localisation peaks, grown over the embeddings' borders, inside the
  Otsu foreground);
* ``points@0.1``: the same with clicks on 10% of the nuclei of every image;
* ``points@1.0+wise``: ``points@1.0`` with WISE's embedding loss (``points_wise.json``:
  :class:`~spoco_monai.losses.AnchorSimilarityLoss` on the grown masks) in place of SPOCO's terms;
* ``scribbles``: one stroke along the skeleton of every nucleus (``scribbles.json``: ``SimulateScribblesd``), grown
  into masks by ``GrowFromPointsd``, SPOCO on them; the bundle's seeded watershed inside the Otsu foreground;
* ``scribbles+p2s``: the same strokes, plus the pixel-to-segment contrast (``PixelToSegmentLoss``, weight 1) on
  the unlabeled pixels over SLIC superpixels of about 50 pixels (``LowLevelSegmentsd``), at most 1024 pixels per
  patch compared with every segment (``scribbles.json``'s ``pixel_to_segment_max_pixels``);
* ``boxes``: the bounding box of every nucleus (``boxes.json``: ``SimulateBoxesd``), grown into a mask inside it by
  ``GrowFromBoxesd``, SPOCO on the masks; segmented like ``scribbles``;
* ``spoco@0.1``: SPOCO on the full masks of 10% of the nuclei (as ``bench/sparse_dsb.py``);
* ``dense``: SPOCO on every mask, the background an object of its own;
* ``classical``: Otsu + distance watershed (:func:`spoco_monai.baselines.nuclei_watershed` through
  ``bench/peers.py``), its seed distance picked on 30 densely labeled train images;
* ``unet3``: the three-class U-Net of ``bench/peers.py`` on every mask, trained for the seconds that
  ``points@1.0`` trained (or ``--peer-budget-s``).

Every row is scored on ``dsb2018_fluo/val`` at native resolution with :func:`spoco_monai.metrics.instance_scores`
(SBD, AP@0.5, mAP over IoU 0.5:0.05:0.95, |DiC|), averaged over the images; the SPOCO rows segment each image whole
with the bundle's inference settings (``segment_volume``). The points rows choose their clustering on val by mAP,
as the bundle's DSB clusterings were chosen on val: the ``"points"`` clustering's ``threshold``, ``min_distance``
and ``min_size`` among :data:`POINTS_CLUSTERING_GRID`, or the other rows' seeded watershed (:data:`NUCLEI_WATERSHED`,
the localisation channel left out); the row keeps every candidate's mAP.

Annotation cost model, in annotator seconds over the training split (its nuclei counted from the labels):

* a click: 2.4 s per object, the point-annotation time measured by Bearman et al., "What's the point: semantic
  segmentation with point supervision", ECCV 2016 (PASCAL VOC);
* a full object mask: 79 s per object, the polygon outline time of COCO (Lin et al., ECCV 2014) that Bearman et al.
  cite (54 s to 79 s per object);
* a scribble: 4.8 s per object, an assumption (twice a click: one stroke through the object), not a measurement;
* a box: 7.0 s per object, the extreme-clicking time of Papadopoulos et al., "Extreme clicking for efficient object
  annotation", ICCV 2017 (34.5 s drawing the box the usual way).

The seeded watershed that scores the SPOCO rows seeds at the Otsu foreground's distance maxima, so the foreground
sets most of their score. A second score of every trained row depends on its embeddings: the Mutex Watershed on the
embeddings' affinities inside the same foreground (:data:`EMBEDDING_CLUSTERING`, as ``bench/sparse_dsb.py``'s
``MWS``), a single setting for every row; stored as the row's ``mws`` entry and printed in a second table.

A row's cost is its per-object time times the objects it annotates (a fraction of every image's nuclei); the
classical row pays for the masks of its tuning images. Results go to ``<output-dir>/<row>.json`` (written
atomically); a rerun skips the rows already there with the same settings. The table lists SBD, AP@0.5, mAP,
|DiC|, annotation seconds, training seconds and the load average of the machine when the row finished.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from monai.bundle import ConfigParser

from bench import peers
from bench import sparse_dsb
from spoco_monai.data.atomic import write_atomically
from spoco_monai.inferers import segment_volume
from spoco_monai.metrics import instance_scores, mean_instance_scores
from spoco_monai.transforms.simulated_annotator import chosen_count

REPOSITORY = Path(__file__).resolve().parents[1]
CONFIGS = REPOSITORY / "bundle" / "configs"
DEFAULT_DATA = REPOSITORY.parent / "shared" / "data" / "dsb2018_fluo"

CLICK_S = 2.4  # Bearman et al. 2016
OUTLINE_S = 79.0  # COCO polygons, as cited by Bearman et al. 2016
SCRIBBLE_S = 2 * CLICK_S  # an assumption, see the module docstring
BOX_S = 7.0  # extreme clicking, Papadopoulos et al. 2017
COST_MODEL = (
    f"click {CLICK_S} s, mask {OUTLINE_S:.0f} s, scribble {SCRIBBLE_S} s (assumed), box {BOX_S} s per object"
)

@dataclass(frozen=True)
class Row:
    """A trained row: its training overlays and values, its inference overlays, and its annotation (cost per object,
    fraction of the objects annotated)."""

    overlays: tuple[str, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)
    seconds_per_object: float = OUTLINE_S
    fraction: float = 1.0
    annotation: str = "masks"
    inference_overlays: tuple[str, ...] = ()


ROWS = {
    "points@1.0": Row(("points_model", "points"), {"point_fraction": 1.0}, CLICK_S, 1.0, "clicks", ("points_model",)),
    "points@0.1": Row(("points_model", "points"), {"point_fraction": 0.1}, CLICK_S, 0.1, "clicks", ("points_model",)),
    "points@1.0+wise": Row(
        ("points_model", "points", "points_wise"), {"point_fraction": 1.0}, CLICK_S, 1.0, "clicks", ("points_model",)
    ),
    "scribbles": Row(("scribbles",), {}, SCRIBBLE_S, 1.0, "scribbles"),
    "scribbles+p2s": Row(("scribbles",), {"pixel_to_segment_weight": 1.0}, SCRIBBLE_S, 1.0, "scribbles"),
    "boxes": Row(("boxes",), {}, BOX_S, 1.0, "boxes"),
    "spoco@0.1": Row((), sparse_dsb.SETTINGS["spoco@0.1"], OUTLINE_S, 0.1, "masks"),
    "dense": Row((), sparse_dsb.SETTINGS["dense"], OUTLINE_S, 1.0, "masks"),
}
PEER_ROWS = ("classical", "unet3")
# the candidates of the points rows' clustering (points_model.json: 0.5, 5, 15); a first grid of thresholds 0.3 to
# 0.7, distances 3 to 8 and sizes 15, 30 chose its corner 0.3, 8, 30 for points@1.0, so the grid reaches past it
POINTS_CLUSTERING_GRID = {"threshold": (0.2, 0.3, 0.5), "min_distance": (5, 8, 12), "min_size": (15, 30, 60)}
# dsb2018_2d.json's seeded watershed for a network without a foreground channel (seeds at the maxima of the Otsu
# foreground's distance map, grown over the embeddings' borders)
NUCLEI_WATERSHED = {"min_distance": 9, "distance_weight": 1.0, "min_size": 15}
# the clustering of the rows' second score: its segments follow the embeddings' borders, not the foreground's shape
EMBEDDING_CLUSTERING = sparse_dsb.CLUSTERINGS["MWS"]
BUDGET_ROW = "points@1.0"
HEADER = ("row", "annotation", "SBD", "AP@0.5", "mAP", r"\|DiC\|", "annotation s", "train s", "load")


def object_counts(folder: Path) -> dict[str, int]:
    """Nuclei per label image of ``folder/labels`` (by file name)."""
    return {
        path.name: int((np.unique(tifffile.imread(path)) > 0).sum())
        for path in sorted((folder / "labels").glob("*.tif"))
    }


def annotation_seconds(name: str, counts: dict[str, int], args: argparse.Namespace) -> float:
    """The annotator's seconds of a row under the cost model (see the module docstring)."""
    if name == "classical":
        # bench/peers.py tunes on the masks of these train images
        chosen = np.random.default_rng(args.seed).permutation(len(counts))[: args.tune_images]
        return OUTLINE_S * sum(list(counts.values())[i] for i in chosen)
    if name in PEER_ROWS:
        return OUTLINE_S * sum(counts.values())
    row = ROWS[name]
    return row.seconds_per_object * sum(chosen_count(row.fraction, n) for n in counts.values())


def segment_val(
    row: Row, network_path: Path, args: argparse.Namespace, entries: dict[str, Any] | None = None
) -> tuple[dict[str, float], float]:
    """Mean instance scores of the trained network on the val images (with ``entries`` set in the inference
    config), and the seconds it took."""
    parser = ConfigParser()
    names = ("common", "inference", "dsb2018_2d", *row.inference_overlays)
    parser.read_config([str(CONFIGS / f"{name}.json") for name in names])
    parser["bundle_root"] = str(CONFIGS.parent)
    parser["dataset_dir"] = str(args.data_dir)
    # the scores of a single pass, as validation during training gives them
    parser["test_time_flips"] = False
    for key, value in (entries or {}).items():
        parser[key] = value
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(network_path, weights_only=True))
    network = network.to(parser.get_parsed_content("device")).eval()
    settings = parser.get_parsed_content("segmentation")
    images = sorted((args.data_dir / "val" / "images").glob("*.tif"))[: args.max_val_images]
    start, scores = time.perf_counter(), []
    for path in images:
        labels = segment_volume(tifffile.imread(path).astype(np.float32), network, settings, progress=False)
        truth = tifffile.imread(args.data_dir / "val" / "labels" / path.name).astype(np.int64)
        scores.append(instance_scores(np.asarray(labels, dtype=np.int64), truth))
    return mean_instance_scores(scores), time.perf_counter() - start


def train_row(name: str, args: argparse.Namespace, trained_s: float | None = None) -> dict[str, Any]:
    """Train a row through the bundle (resuming an interrupted run) and score its final network; with
    ``trained_s`` (a stored row with the same training settings took that long) the final network is only scored
    again."""
    row = ROWS[name]
    folder = args.output_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / "checkpoints" / f"checkpoint_final_iteration={args.iterations}.pt"
    if trained_s is not None and final.is_file():
        return score_row(name, sparse_dsb._final_network(final.parent, args.iterations), trained_s, args)
    overrides = {
        "dataset_dir": str(args.data_dir), "seed": args.seed, "learning_rate": args.learning_rate,
        **row.overrides, "output_dir": str(folder), "num_iterations": args.iterations,
        "val_interval": max(1, args.iterations // args.lr_steps), "checkpoint_interval": args.checkpoint_interval,
        "run_validation": False,
    }
    configs = [*sparse_dsb.TRAIN_CONFIGS, *(CONFIGS / f"{overlay}.json" for overlay in row.overlays)]
    train_s = sparse_dsb._run_bundle(configs, overrides, folder / "train.log")
    return score_row(name, sparse_dsb._final_network(folder / "checkpoints", args.iterations), train_s, args)


def score_row(name: str, network: Path, train_s: float, args: argparse.Namespace) -> dict[str, Any]:
    """The val scores of a trained row's network (a points row's with the clustering it chooses on val)."""
    row = ROWS[name]
    if "points_model" not in row.overlays:
        scores, eval_s = segment_val(row, network, args)
        return {**scores, "train_s": train_s, "eval_s": eval_s}
    # the clustering, chosen on val by mAP as the DSB models' clusterings were
    trials = {}
    for entries in points_clusterings():
        key = json.dumps(entries)
        trials[key] = segment_val(row, network, args, entries)
        print(f"{name} {entries}: mAP {trials[key][0]['map']:.3f}", file=sys.stderr, flush=True)
    best = max(trials, key=lambda key: trials[key][0]["map"])
    scores, eval_s = trials[best]
    return {**scores, "train_s": train_s, "eval_s": eval_s, "clustering": json.loads(best),
            "clustering_trials": {key: trial[0]["map"] for key, trial in trials.items()}}


def embedding_scores(name: str, args: argparse.Namespace) -> dict[str, float]:
    """The val scores of a trained row's final network under :data:`EMBEDDING_CLUSTERING`."""
    network = sparse_dsb._final_network(args.output_dir / name / "checkpoints", args.iterations)
    return segment_val(ROWS[name], network, args, EMBEDDING_CLUSTERING)[0]


def points_clusterings() -> list[dict[str, Any]]:
    """The clusterings a points row chooses from: the ``"points"`` clustering over :data:`POINTS_CLUSTERING_GRID`,
    and the seeded watershed of the other DSB rows, which leaves the localisation channel out."""
    grid = itertools.product(*POINTS_CLUSTERING_GRID.values())
    candidates = [
        {"clustering": "points", "clustering_kwargs": dict(zip(POINTS_CLUSTERING_GRID, values))} for values in grid
    ]
    return [*candidates, {"clustering": "watershed", "clustering_kwargs": NUCLEI_WATERSHED}]


def run_peer_rows(names: list[str], args: argparse.Namespace, budget_s: float) -> dict[str, dict[str, Any]]:
    arguments = [
        "--peers", *names, "--seed", str(args.seed), "--budget-s", f"{budget_s:.0f}",
        "--data-dir", str(args.data_dir),
        "--output-dir", str(args.output_dir / "peers"), "--tune-images", str(args.tune_images),
    ]
    if args.max_val_images:
        arguments += ["--max-val-images", str(args.max_val_images)]
    results = peers.run_peers(names, peers.parse_arguments(arguments))
    keys = ("sbd", "ap50", "map", "dic", "train_s", "eval_s")
    return {name: {key: results[name][key] for key in keys} for name in names}


# the settings a trained row's training depends on (the others change its scoring only)
TRAINING_SETTINGS = ("row", "seed", "iterations", "learning_rate", "lr_steps")


def row_settings(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """What a stored row must match to be reused."""
    settings = {"row": name, "seed": args.seed, "max_val_images": args.max_val_images}
    if name in ROWS:
        settings.update(iterations=args.iterations, learning_rate=args.learning_rate, lr_steps=args.lr_steps)
    if name in ROWS and "points_model" in ROWS[name].overlays:
        settings["clusterings"] = points_clusterings()
    elif name == "classical":
        settings["tune_images"] = args.tune_images
    return settings


def store_row(path: Path, settings: dict[str, Any], result: dict[str, Any]) -> None:
    """Write a row's settings and result to ``path`` atomically."""
    with write_atomically(path) as temporary:
        temporary.write_text(json.dumps({"settings": settings, "result": result}, indent=2))


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for name, r in results.items():
        annotation = ROWS[name].annotation if name in ROWS else ("masks (tuning)" if name == "classical" else "masks")
        lines.append(
            f"| {name} | {annotation} | {r['sbd']:.3f} | {r['ap50']:.3f} | {r['map']:.3f} | {r['dic']:.1f} | "
            f"{r['annotation_s']:.0f} | {r['train_s']:.0f} | {r['load']:.2f} |"
        )
    return "\n".join(lines)


def embedding_table(results: dict[str, dict[str, Any]]) -> str:
    """SBD, AP@0.5 and mAP of the trained rows under :data:`EMBEDDING_CLUSTERING`, beside their first mAP."""
    lines = ["| row | annotation | SBD | AP@0.5 | mAP | mAP, first table |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        m = r["mws"]
        lines.append(
            f"| {name} | {ROWS[name].annotation} | {m['sbd']:.3f} | {m['ap50']:.3f} | {m['map']:.3f} | {r['map']:.3f} |"
        )
    return "\n".join(lines)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    every = [*ROWS, *PEER_ROWS]
    parser.add_argument("--rows", nargs="+", default=every, choices=every)
    parser.add_argument("--iterations", type=int, default=3000, help="training iterations of every trained row")
    parser.add_argument("--max-val-images", type=int, default=None, help="score on the first K val images")
    parser.add_argument("--output-dir", type=Path, default=REPOSITORY / "bundle" / "runs" / "points_dsb")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="dsb2018_fluo folder (train/, val/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--lr-steps", type=int, default=10, help="cosine learning-rate steps over the run")
    parser.add_argument("--checkpoint-interval", type=int, default=500)
    parser.add_argument("--tune-images", type=int, default=30, help="train images the classical row tunes on")
    parser.add_argument(
        "--peer-budget-s", type=float, default=None, help=f"unet3's training seconds (default: {BUDGET_ROW}'s)"
    )
    args = parser.parse_args(argv)
    positive = ("iterations", "max_val_images", "lr_steps", "checkpoint_interval", "tune_images", "peer_budget_s")
    peers.check_dsb_arguments(parser, args, positive)
    args.output_dir, args.data_dir = args.output_dir.resolve(), args.data_dir.resolve()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    counts = object_counts(args.data_dir / "train")
    results: dict[str, dict[str, Any]] = {}
    # the trained rows first: the U-Net peer trains for the seconds of BUDGET_ROW
    for name in sorted(args.rows, key=lambda name: name in PEER_ROWS):
        path = args.output_dir / f"{name}.json"
        settings = row_settings(name, args)
        stored = json.loads(path.read_text()) if path.is_file() else None
        if stored is not None and stored["settings"] == settings:
            results[name] = stored["result"]
            print(f"{name}: read from {path}", file=sys.stderr, flush=True)
            if name in ROWS and "mws" not in results[name]:
                results[name]["mws"] = embedding_scores(name, args)
                store_row(path, settings, results[name])
            continue
        if name in ROWS:
            trained = stored is not None and all(stored["settings"].get(key) == settings[key] for key in TRAINING_SETTINGS)
            # a stored row trained with the same settings is only scored again (other clusterings), keeping its time
            result = train_row(name, args, stored["result"]["train_s"] if trained else None)
        else:
            budget = args.peer_budget_s or results.get(BUDGET_ROW, {}).get("train_s")
            if budget is None and name == "unet3":
                raise SystemExit(f"row unet3 needs --peer-budget-s or the {BUDGET_ROW!r} row to take its seconds")
            result = run_peer_rows([name], args, budget or 1.0)[name]
        result.update(annotation_s=annotation_seconds(name, counts, args), load=os.getloadavg()[0])
        if name in ROWS:
            result["mws"] = embedding_scores(name, args)
        store_row(path, settings, result)
        results[name] = result
        print(f"{name}: mAP {result['map']:.3f}", file=sys.stderr, flush=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"\n{args.iterations} iterations, seed {args.seed}, {args.max_val_images or 'all'} val images, "
        f"device {device}, {sum(counts.values())} train nuclei; annotation cost model: {COST_MODEL}; load average now "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
    )
    print(markdown_table({name: results[name] for name in args.rows}))
    print(f"\nThe trained rows' embeddings under one clustering, {EMBEDDING_CLUSTERING}:\n")
    print(embedding_table({name: results[name] for name in args.rows if name in ROWS}))


if __name__ == "__main__":
    main()
