"""Your volume, a few annotated objects: the one-command fine-tune against what a user would do instead.

Run as ``python -m bench.own_volume --dataset em --fractions 0.1 --seeds 0 [--rows ...]`` from the repository
root. A simulated user annotates a fraction of the objects in the training part of a real volume (a seeded
annotator, :class:`~spoco_monai.transforms.SparseInstanceSampling`; the dense labels there are not used
otherwise), and every row is scored on the other part of the volume, which nothing trained or chose on:

* ``shipped``: the bundle's model for this kind of data, as it is;
* ``finetune``: ``spoco-monai train --from MODEL`` with its default recipe (:func:`train_on_annotations`);
* ``holdout``: ``--holdout 0.25`` with the model's own consistency weight: a quarter of the annotated objects are
  kept out of training to choose the clustering scale and, between the fine-tuned and the starting weights, the
  better one;
* ``scratch``: the same command from random weights (``--from scratch:MODEL``), for the fine-tune's wall time;
* ``classical``: the seeded watershed a user would try first (:mod:`spoco_monai.baselines`), its seed distance
  chosen on the annotated objects (best mean IoU of an annotated object with one segment);
* ``finetune:NAME``: another recipe of :data:`RECIPES` (the selection of the default on ``em_selection``);
* ``unet``: a boundary U-Net (the shipped model's MONAI UNet, one output) trained on the annotated objects' masks
  and borders with the loss only where the labels say something (inside an annotated object and on its border),
  for the fine-tune's wall time, then the same seeded watershed on its boundary map.

Datasets: ``em`` (the y >= 125 half of ``neuroproof_fib_A.h5``, which ``em3d_neurons`` does not train on: train
z < 63, score z >= 63), ``em_selection`` (the recipe's selection data, inside z < 63 of that half only: train
x < 125, score x >= 125), ``membranes`` (``plantseg_ovule_sample.h5``: train x < 64, score x >= 64;
``lm3d_membranes``), ``nuclei`` (``gonuclear_1136.h5``: train z < 50, score z >= 50; ``lm3d_nuclei``; no ``unet``
row: a boundary map does not say where nuclei are), ``nuclei_zoomed`` (the same parts stretched twice along every
axis: nuclei twice as large as the model knows, which it splits).
Every result goes to ``<output-dir>/<dataset>_<fraction>_<seed>/<row>.json`` (written atomically, with the data split,
the shipped weights, the shipped model's segmentation settings and the row's training recipe it was measured with); a
rerun skips rows already there and refuses rows measured on other data, with another shipped model, other settings or
another recipe (a changed default included). The table lists
adapted Rand error, VOI split/merge, SBD, AP@0.5, segments / objects and the training seconds; the machine load is
printed with it. Fine-tune rows also list the objects the starting and the trained weights find in the annotated part,
as ``spoco-monai train`` reports them (:mod:`~spoco_monai.training.object_counts`); a rerun adds them to rows stored
before they were recorded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from monai.networks.nets import UNet
from scipy import ndimage
from skimage.segmentation import find_boundaries

from spoco_monai.baselines import membrane_watershed, nuclei_watershed
from spoco_monai.bundle import bundle_config, bundle_model, bundle_settings, load_bundle_network
from spoco_monai.data.atomic import write_atomically
from spoco_monai.inferers import segment_volume
from spoco_monai.metrics import annotated_object_iou, instance_scores
from spoco_monai.training.annotations import summarize_pairs
from spoco_monai.training.object_counts import count_objects
from spoco_monai.training.train_on_annotations import SCRATCH, FineTuneRecipe, train_on_annotations
from spoco_monai.transforms import SparseInstanceSampling

REPOSITORY = Path(__file__).resolve().parents[1]
BUNDLE = REPOSITORY / "bundle"
DATA = REPOSITORY.parent / "shared" / "data"
ROWS = ("shipped", "finetune", "holdout", "scratch", "classical", "unet")
# the fine-tuning recipes compared on the selection split (``finetune:NAME`` rows); "default" is FineTuneRecipe(),
# the others keep the model's consistency weight unless they set it
RECIPES = {
    "default": FineTuneRecipe(),
    "lr0.02-300": FineTuneRecipe(consistency_weight=None),
    "lr0.1-40": FineTuneRecipe(iterations=40, learning_rate_factor=0.1, consistency_weight=None),
    "lr0.1-150": FineTuneRecipe(iterations=150, learning_rate_factor=0.1, consistency_weight=None),
    "lr0.1-75-patch128": FineTuneRecipe(
        iterations=75, learning_rate_factor=0.1, patch_size=(40, 128, 128), consistency_weight=None
    ),
    "lr0.1-150-consistency10": FineTuneRecipe(iterations=150, learning_rate_factor=0.1),
    "lr0.1-150-unlabeled0": FineTuneRecipe(
        iterations=150, learning_rate_factor=0.1, consistency_weight=None, overrides={"loss_weights#unlabeled": 0}
    ),
    "lr0.02-150": FineTuneRecipe(iterations=150, consistency_weight=None),
    "lr0.01-300": FineTuneRecipe(learning_rate_factor=0.01, consistency_weight=None),
    # the affinity side term of a model trained with it (lm3d_membranes) also takes annotated-unlabeled boundaries
    "affinity-unlabeled": FineTuneRecipe(overrides={"affinity_unlabeled_is_other": True}),
    # the loss's kernel sums on 65536 randomly drawn voxels of each 40x64x64 patch (an opt-in estimate, 40% of them)
    "kernel-pixels": FineTuneRecipe(overrides={"kernel_pixels": 65536}),
    # the consistency term's teacher stays the starting network instead of following the network's moving average
    "frozen-teacher": FineTuneRecipe(overrides={"ema_momentum": 1.0}),
}
# the recipes of the other training rows ("finetune" is RECIPES["default"])
ROW_RECIPES = {
    # measured with the recipe before the consistency weight of 10 (a negative result, see bench/RESULTS.md)
    "holdout": FineTuneRecipe(holdout=0.25, consistency_weight=None),
    "scratch": FineTuneRecipe(iterations=100000),
}
MIN_DISTANCES = (2, 4, 6, 8, 12, 16, 24)


@dataclass(frozen=True)
class Dataset:
    """A real volume split into the part a user annotates and the part every row is scored on."""

    file: Path
    model: str
    axis: int
    split: int
    dense_tissue: bool
    crop: tuple[slice, ...] = ()
    identity: str | None = None
    # both parts are resampled by this factor per axis (labels by nearest neighbour): objects larger than the
    # shipped model was trained on, at the voxel size the file records
    zoom: float = 1.0

    @property
    def annotator_identity(self) -> str:
        """The key of the simulated annotator's seeded choice (the file name unless set)."""
        return self.identity or self.file.name

    def parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[float, ...]]:
        """``(train image, train labels, test image, test labels, element size)``, ZYX, after ``crop``."""
        with h5py.File(self.file, "r") as handle:
            raw, label = handle["raw"][self.crop], handle["label"][self.crop].astype(np.int64)
            element_size = tuple(float(s) for s in handle["raw"].attrs.get("element_size_um", (1.0, 1.0, 1.0)))
        train = [slice(None)] * 3
        test = [slice(None)] * 3
        train[self.axis], test[self.axis] = slice(0, self.split), slice(self.split, None)
        parts = [raw[tuple(train)], label[tuple(train)], raw[tuple(test)], label[tuple(test)]]
        if self.zoom != 1.0:
            parts = [ndimage.zoom(part, self.zoom, order=1 if index % 2 == 0 else 0) for index, part in enumerate(parts)]
        return (*parts, element_size)


DATASETS = {
    # the y >= 125 half of A: the shipped em3d_neurons trains on the y < 125 half
    "em": Dataset(
        DATA / "em3d" / "neuroproof_fib_A.h5", "em3d_neurons", 0, 63, True, (slice(None), slice(125, None)), "A_y125"
    ),
    # the recipe's selection split: inside the z < 63 part of that half, annotate x < 125 and score x >= 125
    "em_selection": Dataset(
        DATA / "em3d" / "neuroproof_fib_A.h5", "em3d_neurons", 2, 125, True, (slice(0, 63), slice(125, None)),
        "A_y125_sel",
    ),
    "membranes": Dataset(DATA / "lm3d" / "plantseg_ovule_sample.h5", "lm3d_membranes", 2, 64, True),
    # the shipped lm3d_nuclei trains on 1135 and chose its clustering on 1136's z < 50 part
    "nuclei": Dataset(DATA / "lm3d" / "gonuclear_1136.h5", "lm3d_nuclei", 0, 50, False),
    # the same, every axis stretched twice: nuclei twice as large as lm3d_nuclei was trained on, which it splits
    "nuclei_zoomed": Dataset(
        DATA / "lm3d" / "gonuclear_1136.h5", "lm3d_nuclei", 0, 50, False, identity="gonuclear_1136_zoom2", zoom=2.0
    ),
}


def classical_segment(dataset: Dataset, image: np.ndarray, min_distance: float, element_size) -> np.ndarray:
    """The classical watershed of the dataset: membranes (dark in EM, so negated) or Otsu nuclei."""
    if dataset.model == "em3d_neurons":
        return membrane_watershed(-image.astype(np.float32), min_distance=min_distance, element_size=element_size)
    if dataset.dense_tissue:
        return membrane_watershed(image.astype(np.float32), min_distance=min_distance, element_size=element_size)
    return nuclei_watershed(image.astype(np.float32), min_distance=min_distance, element_size=element_size)


def choose_min_distance(segment, image: np.ndarray, sparse: np.ndarray) -> float:
    """The seed distance whose segmentation best matches the annotated objects (sparse labels only)."""
    scores = {distance: annotated_object_iou(segment(image, distance), sparse) for distance in MIN_DISTANCES}
    return max(scores, key=scores.get)


def write_pair(folder: Path, name: str, image: np.ndarray, label: np.ndarray | None, element_size) -> str:
    path = folder / f"{name}.h5"
    with write_atomically(path) as temporary, h5py.File(temporary, "w") as handle:
        handle["raw"] = image
        handle["raw"].attrs["element_size_um"] = element_size
        if label is not None:
            handle["label"] = label.astype(np.int32)
    return str(path)


def model_weights(entry: dict) -> Path:
    """The weights file of a bundle model entry (:func:`bundle_model`), relative paths taken from the bundle."""
    weights = Path(entry["model_path"])
    return weights if weights.is_absolute() else BUNDLE / weights


def segment_with_model(model: str | Path, test_image: str) -> np.ndarray:
    entry = bundle_model(BUNDLE, model)
    network, config = load_bundle_network(BUNDLE, model_weights(entry), entry["configs"], "cpu")
    return np.asarray(segment_volume(test_image, network, bundle_settings(config), progress=False))


def object_counts(dataset: Dataset, folder: Path, model_folder: Path) -> dict[str, int]:
    """The objects the starting (shipped) and the trained weights find in the annotated part: the model folder's
    record, or, for a folder trained before the command recorded them, the same count made here."""
    record = json.loads((model_folder / "model.json").read_text())
    if "object_counts" in record:
        return record["object_counts"]
    entry = bundle_model(BUNDLE, model_folder)
    trained, config = load_bundle_network(BUNDLE, model_weights(entry), entry["configs"], "cpu")
    shipped = model_weights(bundle_model(BUNDLE, dataset.model))
    starting, _ = load_bundle_network(BUNDLE, shipped, entry["configs"], "cpu")
    volumes = summarize_pairs([f"{folder / 'train.h5'}:raw"], [f"{folder / 'train.h5'}:label"], 3)
    return count_objects(volumes, {"trained": trained, "starting": starting}, bundle_settings(config))


def boundary_target(sparse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The boundary map and where it is known: inside every annotated object and on its border (both sides).

    With only the annotated objects nonzero, every boundary ``find_boundaries`` marks touches one of them.
    """
    border = find_boundaries(np.where(sparse > 0, sparse, 0), mode="thick")
    known = ((sparse > 0) | border) & (sparse != -1)
    return border.astype(np.float32), known


def model_patch_size(model: str) -> tuple[int, ...]:
    """The training patch size of a shipped model (its inference configs define it)."""
    config = bundle_config(BUNDLE, bundle_model(BUNDLE, model)["configs"])
    return tuple(int(size) for size in config.get_parsed_content("patch_size"))


def train_boundary_unet(
    image: np.ndarray, sparse: np.ndarray, patch: tuple[int, ...], seconds: float, seed: int
) -> torch.nn.Module:
    """A 3D MONAI UNet trained on the annotated objects' borders, masked BCE, for ``seconds`` of wall time."""
    generator = np.random.default_rng(seed)
    torch.manual_seed(seed)
    # instance norm: the one output channel cannot be split into the 8 groups of the SPOCO models' GroupNorm
    network = UNet(3, 1, 1, (16, 32, 64, 128), (2, 2, 2), num_res_units=1, norm="instance")
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3, weight_decay=1e-5)
    normalised = ((image - image.mean()) / max(float(image.std()), 1e-6)).astype(np.float32)
    target, known = boundary_target(sparse)
    centres = np.argwhere(known)
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        centre = centres[generator.integers(len(centres))]
        start = [int(np.clip(c - p // 2, 0, s - p)) for c, p, s in zip(centre, patch, image.shape)]
        region = tuple(slice(b, b + p) for b, p in zip(start, patch))
        flips = tuple(axis for axis in range(3) if generator.random() < 0.5)
        x, y, m = (torch.as_tensor(np.flip(a[region], flips).copy())[None, None] for a in (normalised, target, known))
        logits = network(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, weight=m.float(), reduction="sum")
        loss = loss / m.sum().clamp_min(1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return network.eval()


def boundary_map(network: torch.nn.Module, image: np.ndarray, patch: tuple[int, ...]) -> np.ndarray:
    from monai.inferers import sliding_window_inference

    normalised = ((image - image.mean()) / max(float(image.std()), 1e-6)).astype(np.float32)
    with torch.no_grad():
        logits = sliding_window_inference(torch.as_tensor(normalised)[None, None], patch, 1, network, overlap=0.25)
    return torch.sigmoid(logits)[0, 0].numpy()


def row_recipe(row: str) -> FineTuneRecipe | None:
    """The training recipe of a row; None for the rows that train no SPOCO network."""
    if row == "finetune":
        return RECIPES["default"]
    if row.startswith("finetune:"):
        return RECIPES[row.split(":")[1]]
    return ROW_RECIPES.get(row)


def run_row(row: str, dataset: Dataset, fraction: float, seed: int, folder: Path, budget: dict) -> dict:
    train_image, train_label, test_image, test_label, element_size = dataset.parts()
    sparse = SparseInstanceSampling(fraction, seed=seed)(train_label, identity=dataset.annotator_identity)
    train_path = write_pair(folder, "train", train_image, sparse, element_size)
    test_path = write_pair(folder, "test", test_image, None, element_size)
    annotated = int(np.count_nonzero(np.unique(sparse) > 0))
    began = time.perf_counter()
    training_s = 0.0
    extra: dict = {}
    if row == "shipped":
        prediction = segment_with_model(dataset.model, f"{test_path}:raw")
    elif row.split(":")[0] in ("finetune", "holdout", "scratch"):
        start = dataset.model if row != "scratch" else f"{SCRATCH}:{dataset.model}"
        minutes = None if row != "scratch" else budget["finetune"] / 60
        recipe = row_recipe(row)
        output = train_on_annotations(
            [f"{train_path}:raw"], [f"{train_path}:label"], folder / row.replace(":", "_"), start_from=start,
            bundle=BUNDLE, recipe=recipe, minutes=minutes, annotated_fraction=fraction, seed=seed, progress=False,
        )
        training_s = json.loads((output / "model.json").read_text())["seconds"]
        prediction = segment_with_model(output, f"{test_path}:raw")
        if row.startswith("finetune"):
            extra["object_counts"] = object_counts(dataset, folder, output)
    elif row == "classical":
        def segment(image, distance):
            return classical_segment(dataset, image, distance, element_size)

        distance = choose_min_distance(segment, train_image, sparse)
        prediction = segment(test_image, distance)
    else:
        patch = model_patch_size(dataset.model)
        network = train_boundary_unet(train_image, sparse, patch, budget["finetune"], seed)
        training_s = budget["finetune"]

        def segment(image, distance):
            return membrane_watershed(boundary_map(network, image, patch), min_distance=distance,
                                      element_size=element_size)

        distance = choose_min_distance(segment, train_image, sparse)
        prediction = segment(test_image, distance)
    result = instance_scores(prediction, test_label)
    result.update(training_s=training_s, seconds=time.perf_counter() - began, annotated=annotated, **extra)
    return result


def markdown_table(results: dict[tuple, dict]) -> str:
    lines = [
        "| data | annotated | seed | row | ARand | VOI split | VOI merge | SBD | AP@0.5 | segs / objs | train s "
        "| objects in the annotated part, starting -> trained |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, fraction, seed, row), r in results.items():
        counts = r.get("object_counts")
        change = (
            "-"
            if counts is None
            else f"{counts['starting']} -> {counts['trained']} ({counts['trained'] / counts['starting'] - 1:+.0%})"
        )
        lines.append(
            f"| {name} | {fraction:g} ({r['annotated']}) | {seed} | {row} | {r['arand']:.3f} | {r['voi_split']:.3f} | "
            f"{r['voi_merge']:.3f} | {r['sbd']:.3f} | {r['ap50']:.3f} | {r['segments']} / {r['objects']} | "
            f"{r['training_s']:.0f} | {change} |"
        )
    return "\n".join(lines)


def measurement_setup(dataset: Dataset, row: str) -> dict[str, str]:
    """What a stored row depends on besides its fraction, seed and row: the data split, the shipped weights, the
    shipped model's segmentation settings (which its fine-tunes keep) and the row's training recipe."""
    entry = bundle_model(BUNDLE, dataset.model)
    weights = model_weights(entry)
    settings = bundle_settings(bundle_config(BUNDLE, entry["configs"]))
    return {
        "dataset": repr(dataset).replace(str(DATA), "<data>"),
        "shipped_weights": hashlib.blake2b(weights.read_bytes(), digest_size=8).hexdigest(),
        "segmentation": f"{settings.clustering} {dict(settings.clustering_kwargs)}, flips {settings.test_time_flips}",
        **({} if row_recipe(row) is None else {"recipe": repr(row_recipe(row))}),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="em")
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.1])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--rows", nargs="+", choices=[*ROWS, *(f"finetune:{name}" for name in RECIPES)], default=list(ROWS)
    )
    parser.add_argument("--output-dir", type=Path, default=REPOSITORY / "bench" / "runs" / "own_volume")
    args = parser.parse_args(argv)
    dataset = DATASETS[args.dataset]
    if not dataset.file.is_file():
        raise SystemExit(f"{dataset.file} not found: this benchmark needs ../shared/data beside the repository.")
    results = {}
    for fraction in args.fractions:
        for seed in args.seeds:
            folder = args.output_dir / f"{args.dataset}_{fraction:g}_{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            budget: dict[str, float] = {}
            rows = [row for row in args.rows if not (row == "unet" and not dataset.dense_tissue)]
            for row in sorted(rows, key=lambda r: r != "finetune"):
                path = folder / f"{row.replace(':', '_')}.json"
                setup = measurement_setup(dataset, row)
                if path.is_file():
                    result = json.loads(path.read_text())
                    if result.get("setup") != setup:
                        raise SystemExit(
                            f"{path} was measured on other data or with another shipped model, settings or recipe "
                            f"({result.get('setup')}, now {setup}): choose another --output-dir"
                        )
                    if row.startswith("finetune") and "object_counts" not in result:
                        result["object_counts"] = object_counts(dataset, folder, folder / row.replace(":", "_"))
                        with write_atomically(path) as temporary:
                            temporary.write_text(json.dumps(result, indent=1))
                else:
                    if row in ("scratch", "unet") and "finetune" not in budget:
                        budget["finetune"] = json.loads((folder / "finetune.json").read_text())["training_s"]
                    result = {**run_row(row, dataset, fraction, seed, folder, budget), "setup": setup}
                    with write_atomically(path) as temporary:
                        temporary.write_text(json.dumps(result, indent=1))
                if row == "finetune":
                    budget["finetune"] = result["training_s"]
                results[(args.dataset, fraction, seed, row)] = result
                print(f"{args.dataset} {fraction:g} seed {seed} {row}: ARand {result['arand']:.3f}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}; torch threads {torch.get_num_threads()}")
    print(markdown_table(results))


if __name__ == "__main__":
    main()
