"""The default model on generated membrane volumes: selection volume and demo sample, with and without test-time flips.

Run as ``python -m bench.synthetic_membranes [--weights bundle/models/model.pt ...]`` from the repository root. The
script generates two 96x192x192 volumes with ``spoco_monai.data.write_synthetic_dataset``: seed 7, on which the
default model's training length, side-term weight, clustering and flips were chosen, and seed 2026, the sample
``make demo`` segments (scored once, for the chosen model). Every network given is run with the bundle's
inference settings (``common.json`` and ``inference.json``: the ``segmentation`` entry, seeded watershed), once
with ``test_time_flips`` off and once on; beside them, the classical seeded watershed
(``spoco_monai.baselines.membrane_watershed``, voxel size (2, 1, 1)) that ``make demo`` prints. The table lists
the adapted Rand error (ARand), the symmetric best Dice (SBD), the segments against the cells, and the seconds of
each segmentation.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.bundle import ConfigParser

from spoco_monai.baselines import membrane_watershed
from spoco_monai.bundle import load_bundle_network
from spoco_monai.data import write_synthetic_dataset
from spoco_monai.inferers import segment_volume
from spoco_monai.metrics import instance_scores

REPOSITORY = Path(__file__).resolve().parents[1]
CONFIGS = REPOSITORY / "bundle" / "configs"
VOLUMES = {"seed 7 (selection)": 7, "seed 2026 (demo sample)": 2026}
SHAPE = (96, 192, 192)
ELEMENT_SIZE = (2.0, 1.0, 1.0)


def bundle_inference() -> ConfigParser:
    """The default model's inference configs, layered as ``make demo`` reads them."""
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "common.json"), str(CONFIGS / "inference.json")])
    parser["bundle_root"] = str(REPOSITORY / "bundle")
    return parser


def generated_volume(folder: Path, seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The (image, labels) arrays of the generated volume of ``seed`` and ``shape``, written under ``folder`` once."""
    target = folder / f"seed_{seed}_{'x'.join(map(str, shape))}"
    if not (target / "labels" / "synthetic_000.nii.gz").exists():
        write_synthetic_dataset(target, n_volumes=1, shape=shape, seed=seed, validation_fraction=0.0)
    image = np.asarray(nib.load(target / "images" / "synthetic_000.nii.gz").dataobj, dtype=np.float32)
    labels = np.asarray(nib.load(target / "labels" / "synthetic_000.nii.gz").dataobj, dtype=np.int64)
    return image.reshape(shape), labels.reshape(shape)


def scores(prediction: np.ndarray, labels: np.ndarray, seconds: float) -> dict[str, float]:
    """:func:`instance_scores` of ``prediction`` against ``labels``, with the ``seconds`` the method took."""
    return {**instance_scores(prediction, labels), "seconds": seconds}


def run(
    weights: list[Path], folder: Path, shape: tuple[int, ...] = SHAPE
) -> list[tuple[str, str, dict[str, float]]]:
    """(volume, method, scores) rows: every network without and with flips, then the classical watershed."""
    parser = bundle_inference()
    settings = parser.get_parsed_content("segmentation")
    rows = []
    for volume, seed in VOLUMES.items():
        image, labels = generated_volume(folder, seed, shape)
        for path in weights:
            network, _ = load_bundle_network(REPOSITORY / "bundle", path)
            for flips in (False, True):
                start = time.perf_counter()
                with torch.no_grad():
                    prediction = segment_volume(
                        image, network, dataclasses.replace(settings, test_time_flips=flips), progress=False
                    )
                method = f"{path.name}{', test-time flips' if flips else ''}"
                rows.append((volume, method, scores(np.asarray(prediction), labels, time.perf_counter() - start)))
        start = time.perf_counter()
        classical = membrane_watershed(image, element_size=ELEMENT_SIZE)
        rows.append((volume, "classical seeded watershed", scores(classical, labels, time.perf_counter() - start)))
    return rows


def markdown_table(rows: list[tuple[str, str, dict[str, float]]]) -> str:
    lines = ["| volume | method | ARand | SBD | segments / cells | s |", "|---|---|---|---|---|---|"]
    for volume, method, row in rows:
        lines.append(
            f"| {volume} | {method} | {row['arand']:.4f} | {row['sbd']:.3f} | {row['segments']} / {row['objects']} | "
            f"{row['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", type=Path, default=[REPOSITORY / "bundle" / "models" / "model.pt"])
    parser.add_argument("--work-dir", type=Path, help="where the generated volumes are kept (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as temporary:
        rows = run(args.weights, args.work_dir or Path(temporary))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{torch.get_num_threads()} torch thread(s), load average {load}\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
