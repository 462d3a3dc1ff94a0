"""The 3D sample models against classical watersheds, on data their training did not see.

Run as ``python -m bench.models3d [--models lm3d_nuclei lm3d_membranes em3d_neurons] [--weights-dir DIR ...]``
from the repository root. For every overlay (``bundle/configs/<name>.json`` layered on ``train.json``) the script
builds the overlay's validation data and inferer exactly as the bundle does (``validate#dataset`` and
``validate#inferer``: the report volume or part, the overlay's offsets, clustering options and foreground rule),
loads ``<weights-dir>/<name>.pt`` (default ``bundle/models``; several folders compare several trainings) and
segments the validation data ("selection": the training chose its checkpoint on it) and, where the data allow,
a test part that neither the training nor the choice of checkpoint saw (:data:`TEST_DATA`). Beside it, the
classical watershed of :mod:`spoco_monai.baselines` a user would try first segments the same data:

* ``lm3d_nuclei``: :func:`~spoco_monai.baselines.nuclei_watershed` (Otsu mask, distance-transform seeds);
* ``lm3d_membranes``: :func:`~spoco_monai.baselines.membrane_watershed` on the bright membranes;
* ``em3d_neurons``: the same on the negated FIB-SEM intensities (membranes are dark in EM).

The baselines' one free parameter, ``min_distance`` between seeds, is chosen by adapted Rand error on the
overlay's *training* data (the training volume or half), with the overlay's voxel size. The table lists the
adapted Rand error (ARand), the variation of information split into its split and merge parts (VOI), the
symmetric best Dice (SBD), AP@0.5, mAP over IoU 0.5:0.05:0.95, the number of segments against the number of
ground-truth objects, and the seconds each method took on the report data. ``--json`` also writes the scores;
``--test-time-flips`` adds a row with every window's mirrored passes averaged (``SegmentationSettings``),
``--affinity-delta-dists`` a row per affinity kernel width and ``--settings`` a row per set of other config entries
(e.g. another clustering), to choose them on the selection data; ``--training-part`` also scores the training data
(a "training" part), for the models whose report data is their only other data.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import Dataset
from monai.transforms import Compose

from spoco_monai.baselines import membrane_watershed, nuclei_watershed
from spoco_monai.bundle import load_bundle_network
from spoco_monai.metrics import instance_scores, mean_instance_scores

REPOSITORY = Path(__file__).resolve().parents[1]
BUNDLE = REPOSITORY / "bundle"
MODELS = ("lm3d_nuclei", "lm3d_membranes", "em3d_neurons")
MIN_DISTANCES = (2, 3, 4, 6, 8, 10, 12, 16, 20, 24)
DATA = REPOSITORY.parent / "shared" / "data"
# per model, data that neither its training nor its choice of checkpoint uses (datalist items with a region)
TEST_DATA = {
    "em3d_neurons": [
        {
            "image": f"{DATA / 'em3d' / 'neuroproof_fib_A.h5'}:raw",
            "label": f"{DATA / 'em3d' / 'neuroproof_fib_A.h5'}:label",
            "region": [[63, None], [125, None], None],
        }
    ],
    "lm3d_nuclei": [
        {
            "image": f"{DATA / 'lm3d' / 'gonuclear_1136.h5'}:raw",
            "label": f"{DATA / 'lm3d' / 'gonuclear_1136.h5'}:label",
            "region": [[50, None], None, None],
        }
    ],
}
BASELINES: dict[str, tuple[str, Callable[..., np.ndarray], float]] = {
    # model: (name in the table, function, sign applied to the intensities)
    "lm3d_nuclei": ("Otsu + distance watershed", nuclei_watershed, 1.0),
    "lm3d_membranes": ("seeded membrane watershed", membrane_watershed, 1.0),
    "em3d_neurons": ("seeded membrane watershed (inverted EM)", membrane_watershed, -1.0),
}


def overlay_configs(name: str) -> list[str]:
    """``common.json``, ``train.json`` and the overlay ``name``, layered as ``python -m monai.bundle run`` reads them."""
    return [f"configs/{config}.json" for config in ("common", "train", name)]


def _volumes(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, label) arrays (Z, Y, X) of every item of a bundle dataset, after its transforms."""
    items = [dataset[index] for index in range(len(dataset))]
    return [
        (np.asarray(item["image"][0], dtype=np.float32), np.asarray(item["label"][0]).astype(np.int64))
        for item in items
    ]


def _training_volumes(parser: ConfigParser) -> list[tuple[np.ndarray, np.ndarray]]:
    """The overlay's training data (its volumes or parts), read as the training reads them."""
    load = Compose(parser.get_parsed_content("train#load"))
    return _volumes(Dataset(parser.get_parsed_content("train#datalist"), load))


def baseline_min_distance(name: str, parser: ConfigParser) -> tuple[int, dict[int, float]]:
    """The ``min_distance`` of the overlay's baseline with the lowest adapted Rand error on its training data."""
    _, segment, sign = BASELINES[name]
    element_size = parser.get_parsed_content("element_size")
    training = _training_volumes(parser)
    errors = {}
    for min_distance in MIN_DISTANCES:
        per_volume = [
            instance_scores(segment(sign * image, min_distance=min_distance, element_size=element_size), label)["arand"]
            for image, label in training
        ]
        errors[min_distance] = float(np.mean(per_volume))
    return min(errors, key=errors.get), errors


def run_model(
    name: str,
    weights: Path,
    device: torch.device,
    test_time_flips: bool = False,
    affinity_delta_dists: Sequence[float] = (),
    settings: Sequence[dict[str, Any]] = (),
    training_part: bool = False,
    overrides: dict[str, Any] | None = None,
) -> dict[tuple[str, str], dict[str, float]]:
    """Scores of the model (also with test-time flips, with other affinity kernels and with other config entries,
    e.g. another clustering, when asked) and of its baseline, per data part ("selection": the overlay's validation
    data; "test": :data:`TEST_DATA`; "training": the overlay's training data, with ``training_part``), averaged over
    each part's volumes. ``overrides`` are config entries set before anything is built (e.g. other data regions)."""
    network, parser = load_bundle_network(BUNDLE, weights, overlay_configs(name), device, overrides)
    network.eval()
    parts = {"selection": _volumes(parser.get_parsed_content("validate#dataset"))}
    if training_part:
        parts["training"] = _training_volumes(parser)
    if name in TEST_DATA:
        parts["test"] = _volumes(Dataset(TEST_DATA[name], Compose(parser.get_parsed_content("validate#load"))))
    min_distance, _ = baseline_min_distance(name, parser)
    method, segment, sign = BASELINES[name]
    element_size = parser.get_parsed_content("element_size")
    rows = {}
    for part, report in parts.items():
        variants = [(flips, {}) for flips in ((False, True) if test_time_flips else (False,))]
        variants += [(False, {"affinity_delta_dist": float(delta)}) for delta in affinity_delta_dists]
        variants += [(False, dict(entries)) for entries in settings]
        for flips, entries in variants:
            parser["test_time_flips"] = flips
            original = {key: parser[key] for key in entries}
            for key, value in entries.items():
                parser[key] = value
            inferer = parser.get_parsed_content("validate#inferer", lazy=False)
            start = time.perf_counter()
            with torch.no_grad():
                predictions = [
                    np.asarray(inferer(torch.as_tensor(image)[None, None].to(device), network)[0, 0].cpu())
                    for image, _ in report
                ]
            variant = ", test-time flips" if flips else "".join(f", {key} {value}" for key, value in entries.items())
            row = (part, f"SPOCO ({os.path.relpath(weights, REPOSITORY)}){variant}")
            rows[row] = mean_instance_scores([instance_scores(p, label) for p, (_, label) in zip(predictions, report)])
            rows[row]["seconds"] = time.perf_counter() - start
            for key, value in original.items():
                parser[key] = value
        start = time.perf_counter()
        classical = [segment(sign * image, min_distance=min_distance, element_size=element_size) for image, _ in report]
        row = (part, f"{method}, min_distance {min_distance}")
        rows[row] = mean_instance_scores([instance_scores(p, label) for p, (_, label) in zip(classical, report)])
        rows[row]["seconds"] = time.perf_counter() - start
    return rows


def markdown_table(results: dict[str, dict[tuple[str, str], dict[str, float]]]) -> str:
    lines = [
        "| model | data | method | ARand | VOI split | VOI merge | SBD | AP@0.5 | mAP | segments / objects | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, rows in results.items():
        for (part, method), row in rows.items():
            lines.append(
                f"| {model} | {part} | {method} | {row['arand']:.3f} | {row['voi_split']:.3f} | "
                f"{row['voi_merge']:.3f} | {row['sbd']:.3f} | {row['ap50']:.3f} | {row['map']:.3f} | "
                f"{row['segments']:.0f} / {row['objects']:.0f} | {row['seconds']:.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument(
        "--weights-dir", type=Path, nargs="+", default=[BUNDLE / "models"],
        help="folders holding <model>.pt; each adds its SPOCO rows",
    )
    parser.add_argument("--json", type=Path, help="also write the scores to this JSON file")
    parser.add_argument(
        "--test-time-flips", action="store_true", help="add a row per model with the mirrored passes averaged"
    )
    parser.add_argument(
        "--affinity-delta-dists", type=float, nargs="+", default=[],
        help="add a row per value with the clustering's affinity kernel set to it (to choose it on the selection data)",
    )
    parser.add_argument(
        "--settings", type=json.loads, nargs="+", default=[],
        help="add a row per JSON object of config entries set for the segmentation, e.g. another clustering: "
        "'{\"clustering\": \"watershed\", \"clustering_kwargs\": {\"min_distance\": 6}}'",
    )
    parser.add_argument(
        "--training-part", action="store_true",
        help="also score the overlay's training data, to choose segmentation settings on it (as the baselines' "
        "min_distance is chosen)",
    )
    parser.add_argument(
        "--overrides", type=json.loads, default=None,
        help="JSON object of config entries set before the data and networks are built, e.g. the regions of a "
        "network trained on part of the training data: "
        "'{\"report_region\": \"$(slice(None), slice(80, None), slice(0, 64))\"}'",
    )
    args = parser.parse_args(argv)
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    results = {
        name: {
            row: scores
            for folder in args.weights_dir
            for row, scores in run_model(
                name, folder / f"{name}.pt", device, args.test_time_flips, args.affinity_delta_dists, args.settings,
                args.training_part, args.overrides,
            ).items()
        }
        for name in args.models
    }
    if args.json is not None:
        serializable = {name: {" / ".join(row): value for row, value in rows.items()} for name, rows in results.items()}
        args.json.write_text(json.dumps(serializable, indent=2) + "\n")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"device {device}, {torch.get_num_threads()} torch thread(s), load average {load}\n")
    print(markdown_table(results))


if __name__ == "__main__":
    main()
