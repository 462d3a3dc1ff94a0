"""Baselines a user would pick instead of SPOCO for 2D nuclei, scored like the sparse-supervision experiment.

Run as ``python -m bench.peers [--peers classical unet3 unet3-few] [--budget-s 900] [--max-val-images K]`` from
the repository root. Every peer segments ``dsb2018_fluo/val`` at native resolution and is scored per image with
the project's metrics (symmetric best Dice SBD, absolute count difference |DiC|, AP@0.5, mAP over IoU
0.5:0.05:0.95), averaged over the images:

* ``classical``: Otsu threshold of the lightly smoothed image, holes filled, small objects removed, seeds at the
  maxima of the distance transform, watershed on the negated distance inside the mask. Its one free parameter,
  ``min_distance`` between seeds, is picked by mAP on a seeded subset of the *train* split; no training.
* ``unet3``: a MONAI UNet with three classes (background, interior, inner boundary of every nucleus) trained with
  Dice + cross-entropy on random 128x128 crops of all train images for a wall-clock budget on one thread;
  instances by a seeded watershed: seeds are the connected interiors, the mask is the predicted foreground.
* ``unet3-few``: the same recipe on whole, densely labeled train images drawn in a seeded random order until
  their nuclei add up to the number of objects SPOCO@0.1 is given over the whole train split.

Results go to ``<output-dir>/<peer>.json`` (written atomically); a rerun with the same settings skips the peers
already there. The U-Nets train with MONAI's ``SupervisedTrainer`` and the checkpointing of the SPOCO bundle: a
checkpoint every ``--checkpoint-interval`` iterations in ``<output-dir>/<peer>_checkpoints`` (network, optimiser,
trainer state with the seconds spent, the crop generator and the settings), from which an interrupted training
resumes; the final state dict goes to ``<output-dir>/<peer>_network.pt``. ``run_peers`` and ``markdown_rows`` serve
other benchmarks that print these rows in a table of their own.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from monai.transforms import NormalizeIntensity
from skimage.measure import label as label_regions
from skimage.morphology import remove_small_objects
from skimage.segmentation import find_boundaries, watershed

from spoco_monai.baselines import nuclei_watershed
from spoco_monai.data.atomic import write_atomically
from spoco_monai.engines import (
    AtomicCheckpointSaver,
    ResumeCheckpointLoader,
    TimeBudget,
    TrainingSettings,
    latest_checkpoint,
)
from spoco_monai.engines.time_budget import ELAPSED_KEY
from spoco_monai.engines.training_settings import SETTINGS_KEY
from spoco_monai.metrics import instance_scores, mean_instance_scores
from spoco_monai.transforms.sparse_sampling import SparseInstanceSampling

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPOSITORY.parent / "shared" / "data" / "dsb2018_fluo"
PEERS = ("classical", "unet3", "unet3-few")
HEADER = ("peer", "SBD", r"\|DiC\|", "AP@0.5", "mAP", "train s", "eval s")

# Classical peer. Sigma 1 removes pixel noise without merging touching nuclei; DSB nuclei are rarely below
# 20 pixels, so smaller mask components are noise.
SMOOTHING_SIGMA = 1.0
MIN_OBJECT_PIXELS = 15
MIN_DISTANCE_GRID = (3, 5, 7, 9, 12, 16, 20)

# Three-class U-Net peer.
BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
CROP_SIZE = 128
CROPS_PER_STEP = 4
# A crop centred on a random nucleus pixel with this probability, anywhere otherwise: most DSB images are
# largely background, and uniform crops would spend most steps on it.
NUCLEUS_CENTRED = 0.9
LEARNING_RATE = 1e-3
# iterations per trainer epoch: the progress line is printed at the end of each
PROGRESS_EVERY = 50
# the time budget, not the epochs, ends a training
MAX_EPOCHS = 10**9
# the trainer state's attribute (and checkpoint entry) holding the loss of the last iteration
LOSS_KEY = "loss"
# Interiors of the smallest nuclei are a few pixels; smaller seed components are noise.
MIN_SEED_PIXELS = 4
SPOCO_FRACTION = 0.1


@dataclass(frozen=True)
class Sample:
    """One image of a split: z-score normalised image (H, W) float32, dense labels (H, W) int32, file name."""

    name: str
    image: np.ndarray
    label: np.ndarray

    @property
    def num_objects(self) -> int:
        ids = np.unique(self.label)
        return int((ids > 0).sum())


def load_split(folder: Path, limit: int | None = None) -> list[Sample]:
    """The images of ``folder/images`` (sorted by file name, the first ``limit``) with ``folder/labels``.

    Images are normalised as in the SPOCO bundle (``NormalizeIntensity``: zero mean, unit variance per image).
    """
    files = sorted((folder / "images").glob("*.tif"))[:limit]
    normalise = NormalizeIntensity()
    samples = []
    for path in files:
        image = np.asarray(normalise(tifffile.imread(path).astype(np.float32)), dtype=np.float32)
        label = tifffile.imread(folder / "labels" / path.name).astype(np.int32)
        samples.append(Sample(path.name, image, label))
    return samples


def evaluate(
    segment: Callable[[np.ndarray], np.ndarray], samples: list[Sample]
) -> tuple[dict[str, float], list[dict[str, Any]], float]:
    """Segment every sample with ``segment(image) -> labels``; mean scores, per-image scores, segmentation s."""
    per_image, seconds = [], 0.0
    for sample in samples:
        start = time.perf_counter()
        prediction = segment(sample.image)
        seconds += time.perf_counter() - start
        per_image.append({"name": sample.name, **instance_scores(prediction, sample.label)})
    return mean_instance_scores(per_image), per_image, seconds


def classical_segment(image: np.ndarray, min_distance: int) -> np.ndarray:
    """Otsu mask, distance-transform seeds and watershed: (H, W) image -> (H, W) int32 labels."""
    return nuclei_watershed(image, min_distance=min_distance, sigma=SMOOTHING_SIGMA, min_size=MIN_OBJECT_PIXELS)


def tune_min_distance(samples: list[Sample]) -> tuple[int, dict[int, float]]:
    """The ``min_distance`` of :data:`MIN_DISTANCE_GRID` with the best mean mAP on ``samples``, and all means."""
    means = {}
    for distance in MIN_DISTANCE_GRID:
        per_image = [instance_scores(classical_segment(s.image, distance), s.label) for s in samples]
        means[distance] = mean_instance_scores(per_image)["map"]
    return max(means, key=means.get), means


def three_class_target(label: np.ndarray) -> np.ndarray:
    """Background 0, interior 1 and inner boundary 2 (1 pixel wide) of dense labels (H, W) -> (H, W) uint8."""
    target = (label > 0).astype(np.uint8)
    target[find_boundaries(label, mode="inner")] = BOUNDARY
    return target


def few_image_subset(samples: list[Sample], seed: int) -> tuple[list[Sample], int]:
    """Whole images, drawn in a seeded order, whose nuclei add up to the objects SPOCO@0.1 keeps on ``samples``.

    Returns the chosen samples and the target: the sum over ``samples`` of SPOCO's kept count (``round(0.1 K)``
    rounded half up, at least 1 when K > 0, the rule of :class:`SparseInstanceSampling`).
    """
    counts = [sample.num_objects for sample in samples]
    keep_rule = SparseInstanceSampling(fraction=SPOCO_FRACTION)
    target = sum(keep_rule.kept_count(count) for count in counts)
    chosen, total = [], 0
    for index in np.random.default_rng(seed).permutation(len(samples)):
        if total >= target:
            break
        chosen.append(samples[index])
        total += counts[index]
    return chosen, target


def build_unet() -> UNet:
    return UNet(
        spatial_dims=2, in_channels=1, out_channels=3, channels=(16, 32, 64, 128), strides=(2, 2, 2),
        num_res_units=1, norm="batch",
    )


class CropSampler:
    """Random augmented crops of images and their three-class targets, biased to contain nuclei.

    Iterating gives an endless stream of batches ``{"image", "label"}`` for a trainer; :meth:`state_dict` and
    :meth:`load_state_dict` hold the generator's state, so a checkpoint resumes the stream where it stopped.

    Args:
        samples: the training images.
        rng: the random generator of the run.
    """

    def __init__(self, samples: list[Sample], rng: np.random.Generator) -> None:
        margin = CROP_SIZE // 2
        pad = [(margin, margin), (margin, margin)]
        # Padding by half a crop lets every pixel, even at the border, be a crop centre.
        self.images = [np.pad(s.image, pad, mode="reflect") for s in samples]
        self.targets = [np.pad(three_class_target(s.label), pad, mode="constant") for s in samples]
        self.nucleus_pixels = [np.flatnonzero(t) for t in self.targets]
        self.rng = rng

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            images, targets = self.batch()
            yield {"image": images, "label": targets}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = dict(state["rng"])

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (CROPS_PER_STEP, 1, CROP_SIZE, CROP_SIZE) float32 and targets of the same shape, int64."""
        images, targets = zip(*(self._crop() for _ in range(CROPS_PER_STEP)))
        return torch.from_numpy(np.stack(images)[:, None]), torch.from_numpy(np.stack(targets)[:, None])

    def _crop(self) -> tuple[np.ndarray, np.ndarray]:
        index = int(self.rng.integers(len(self.images)))
        image, target, pixels = self.images[index], self.targets[index], self.nucleus_pixels[index]
        margin = CROP_SIZE // 2
        if pixels.size and self.rng.random() < NUCLEUS_CENTRED:
            row, column = np.unravel_index(pixels[self.rng.integers(pixels.size)], target.shape)
        else:
            row = self.rng.integers(margin, target.shape[0] - margin)
            column = self.rng.integers(margin, target.shape[1] - margin)
        row = int(np.clip(row, margin, target.shape[0] - margin)) - margin
        column = int(np.clip(column, margin, target.shape[1] - margin)) - margin
        window = (slice(row, row + CROP_SIZE), slice(column, column + CROP_SIZE))
        image, target = image[window], target[window]
        turns, flip = int(self.rng.integers(4)), bool(self.rng.integers(2))
        image, target = np.rot90(image, turns), np.rot90(target, turns)
        if flip:
            image, target = image[:, ::-1], target[:, ::-1]
        return np.ascontiguousarray(image), np.ascontiguousarray(target.astype(np.int64))


def cosine_learning_rate(elapsed_s: float, budget_s: float) -> float:
    """Cosine decay from :data:`LEARNING_RATE` to 0 over the wall-clock budget."""
    return LEARNING_RATE * 0.5 * (1.0 + math.cos(math.pi * min(elapsed_s / budget_s, 1.0)))


def save_json(payload: Any, path: Path) -> None:
    """Write ``payload`` as JSON through the library's atomic writer."""
    with write_atomically(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=2))


def train_unet(
    samples: list[Sample], budget_s: float, seed: int, checkpoint_dir: Path, checkpoint_interval: int,
    device: torch.device, settings: dict[str, Any],
) -> tuple[UNet, dict[str, Any]]:
    """Train the three-class UNet on crops of ``samples`` for ``budget_s`` seconds of training wall clock.

    MONAI's ``SupervisedTrainer`` runs the steps; every ``checkpoint_interval`` iterations and at the end
    :class:`~spoco_monai.engines.AtomicCheckpointSaver` writes the network, optimiser, trainer state (iteration,
    seconds spent, last loss), crop generator and ``settings`` to ``checkpoint_dir``. A training there with the same
    ``settings`` is resumed from its latest checkpoint (a finished one is just loaded); other settings are refused.
    Returns the network in eval mode and the training record (steps, train_s, final loss, finished).
    """
    torch.manual_seed(seed)
    network = build_unet().to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=LEARNING_RATE)
    crops = CropSampler(samples, np.random.default_rng(seed))
    trainer = SupervisedTrainer(
        device=device, max_epochs=MAX_EPOCHS, train_data_loader=crops, network=network, optimizer=optimizer,
        loss_function=DiceCELoss(softmax=True, to_onehot_y=True), epoch_length=PROGRESS_EVERY, decollate=False,
    )
    training_settings = TrainingSettings(settings)
    objects = {"network": network, "optimizer": optimizer, "trainer": trainer, "crops": crops,
               SETTINGS_KEY: training_settings}
    resume = latest_checkpoint(checkpoint_dir)
    try:
        training_settings.check(resume)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from error
    if resume is not None:
        ResumeCheckpointLoader(resume, objects, training_settings, map_location=device).attach(trainer)
    budget = TimeBudget(budget_s)
    budget.attach(trainer)
    trainer.state_dict_user_keys.append(LOSS_KEY)
    setattr(trainer.state, LOSS_KEY, float("nan"))

    @trainer.on(Events.STARTED)
    def report_resume(engine: Engine) -> None:
        if engine.state.iteration and not budget.spent(engine):
            print(f"resuming from {resume} at step {engine.state.iteration}", file=sys.stderr, flush=True)

    @trainer.on(Events.ITERATION_STARTED)
    def set_learning_rate(engine: Engine) -> None:
        for group in optimizer.param_groups:
            group["lr"] = cosine_learning_rate(getattr(engine.state, ELAPSED_KEY), budget_s)

    @trainer.on(Events.ITERATION_COMPLETED)
    def keep_loss(engine: Engine) -> None:
        setattr(engine.state, LOSS_KEY, engine.state.output[LOSS_KEY].item())

    @trainer.on(Events.EPOCH_COMPLETED)
    def report_progress(engine: Engine) -> None:
        print(
            f"  step {engine.state.iteration}  {getattr(engine.state, ELAPSED_KEY):.0f}/{budget_s:.0f} s  "
            f"loss {getattr(engine.state, LOSS_KEY):.4f}  lr {optimizer.param_groups[0]['lr']:.2e}",
            file=sys.stderr, flush=True,
        )

    AtomicCheckpointSaver(
        save_dir=str(checkpoint_dir), save_dict=objects, save_interval=checkpoint_interval, epoch_level=False,
        n_saved=1, save_final=True,
    ).attach(trainer)
    trainer.run()
    record = {"steps": trainer.state.iteration, "train_s": getattr(trainer.state, ELAPSED_KEY),
              "loss": getattr(trainer.state, LOSS_KEY), "finished": budget.spent(trainer)}
    return network.eval(), record


@torch.no_grad()
def predict_probabilities(network: torch.nn.Module, image: np.ndarray, device: torch.device) -> np.ndarray:
    """Softmax of the whole image (H, W), padded by reflection to a multiple of 8 and cropped back: (3, H, W)."""
    height, width = image.shape
    pad = (0, -width % 8, 0, -height % 8)
    batch = F.pad(torch.from_numpy(image)[None, None].to(device), pad, mode="reflect")
    return torch.softmax(network(batch), dim=1)[0, :, :height, :width].cpu().numpy()


def seeded_watershed(probabilities: np.ndarray) -> np.ndarray:
    """Instances from three-class probabilities (3, H, W): (H, W) int32 labels.

    Seeds are the connected components of interior > 0.5 (components under :data:`MIN_SEED_PIXELS` dropped),
    grown by a watershed on the background probability inside the foreground mask (background < 0.5).
    """
    seeds = remove_small_objects(probabilities[INTERIOR] > 0.5, max_size=MIN_SEED_PIXELS - 1)
    mask = 1.0 - probabilities[BACKGROUND] > 0.5
    return watershed(probabilities[BACKGROUND], label_regions(seeds), mask=mask).astype(np.int32)


def check_settings(saved: dict[str, Any], wanted: dict[str, Any], path: Path) -> None:
    """Refuse to reuse ``path`` when it was made with other settings (e.g. a smoke-test budget)."""
    if saved != wanted:
        raise SystemExit(
            f"error: {path} was made with settings {saved}, not {wanted}; "
            "use another --output-dir or delete the file"
        )


def peer_settings(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The settings a stored result or checkpoint of ``name`` must match to be reused."""
    settings: dict[str, Any] = {"peer": name, "seed": args.seed, "max_val_images": args.max_val_images}
    if name == "classical":
        settings["tune_images"] = args.tune_images
    else:
        settings["budget_s"] = args.budget_s
    return settings


def run_classical(args: argparse.Namespace, train: list[Sample], val: list[Sample]) -> dict[str, Any]:
    chosen = np.random.default_rng(args.seed).permutation(len(train))[: args.tune_images]
    start = time.perf_counter()
    min_distance, tuning = tune_min_distance([train[i] for i in sorted(chosen)])
    tune_s = time.perf_counter() - start
    print(f"classical: min_distance {min_distance} (train mAP {tuning})", file=sys.stderr, flush=True)
    means, per_image, eval_s = evaluate(lambda image: classical_segment(image, min_distance), val)
    return {
        **means, "train_s": 0.0, "eval_s": eval_s, "min_distance": min_distance,
        "tuning_map": {str(k): v for k, v in tuning.items()}, "tune_s": tune_s, "per_image": per_image,
    }


def run_unet(name: str, args: argparse.Namespace, train: list[Sample], val: list[Sample]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if name == "unet3-few":
        train, target = few_image_subset(train, args.seed)
        extra = {"object_target": target, "images": [s.name for s in train],
                 "train_objects": sum(s.num_objects for s in train)}
        print(f"{name}: {len(train)} whole images with {extra['train_objects']} nuclei (target {target})",
              file=sys.stderr, flush=True)
    device = torch.device(args.device)
    network, record = train_unet(
        train, args.budget_s, args.seed, args.output_dir / f"{name}_checkpoints", args.checkpoint_interval,
        device, peer_settings(name, args),
    )
    torch.save(network.state_dict(), args.output_dir / f"{name}_network.pt")
    means, per_image, eval_s = evaluate(
        lambda image: seeded_watershed(predict_probabilities(network, image, device)), val
    )
    return {**means, "train_s": record["train_s"], "eval_s": eval_s, "steps": record["steps"],
            "final_loss": record["loss"], **extra, "per_image": per_image}


def run_peers(names: list[str], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Train (where needed) and evaluate every peer in ``names``; results keyed by peer name.

    Each result holds the means over the val images of :func:`~spoco_monai.metrics.instance_scores` (``sbd``,
    ``dic``, ``ap50``, ``map``, ...), ``train_s`` and ``eval_s``,
    plus per-image scores and peer details. ``args`` is what :func:`parse_arguments` returns. A result already in
    ``args.output_dir`` with the same settings is read instead of recomputed.
    """
    args.output_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    results: dict[str, dict[str, Any]] = {}
    splits: dict[str, list[Sample]] = {}

    def split(name: str, limit: int | None = None) -> list[Sample]:
        if name not in splits:
            splits[name] = load_split(args.data_dir / name, limit)
        return splits[name]

    for name in names:
        path = args.output_dir / f"{name}.json"
        settings = peer_settings(name, args)
        if path.is_file():
            stored = json.loads(path.read_text())
            check_settings(stored["settings"], settings, path)
            results[name] = stored["result"]
            print(f"{name}: read from {path}", file=sys.stderr, flush=True)
            continue
        train, val = split("train"), split("val", args.max_val_images)
        result = run_classical(args, train, val) if name == "classical" else run_unet(name, args, train, val)
        # Timings depend on what else ran on the machine, so each result keeps the conditions it was measured in.
        result.update(threads=args.threads, device=args.device, load_average=list(os.getloadavg()))
        save_json({"settings": settings, "result": result}, path)
        results[name] = result
        print(f"{name}: done, mAP {result['map']:.3f}", file=sys.stderr, flush=True)
    return results


def markdown_rows(results: dict[str, dict[str, Any]]) -> list[str]:
    """One markdown table row per peer: | peer | SBD | |DiC| | AP@0.5 | mAP | train s | eval s |."""
    return [
        f"| {name} | {r['sbd']:.3f} | {r['dic']:.1f} | {r['ap50']:.3f} | {r['map']:.3f} | "
        f"{r['train_s']:.0f} | {r['eval_s']:.0f} |"
        for name, r in results.items()
    ]


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    return "\n".join(["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER), *markdown_rows(results)])


def check_dsb_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, positive: Sequence[str]) -> None:
    """Stop with the parser's one-line error when an option of ``positive`` is not positive or the DSB2018 data
    set (``args.data_dir`` with ``train/images`` and ``val/images``) is missing."""
    for option in positive:
        value = getattr(args, option)
        if value is not None and value <= 0:
            parser.error(f"--{option.replace('_', '-')} must be positive, got {value}")
    for split in ("train", "val"):
        if not (args.data_dir / split / "images").is_dir():
            parser.error(f"{args.data_dir / split / 'images'} is missing (expected the dsb2018_fluo data set)")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget-s", type=float, default=900.0, help="training wall-clock seconds per U-Net peer")
    parser.add_argument("--max-val-images", type=int, default=None, help="evaluate on the first K val images")
    parser.add_argument("--output-dir", type=Path, default=REPOSITORY / "bundle" / "runs" / "peers")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="dsb2018_fluo folder (train/, val/)")
    parser.add_argument("--tune-images", type=int, default=30, help="train images that pick min_distance")
    parser.add_argument("--checkpoint-interval", type=int, default=500, help="iterations between checkpoints")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the budget is measured on them)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    check_dsb_arguments(parser, args, ("budget_s", "max_val_images", "tune_images", "checkpoint_interval", "threads"))
    args.output_dir = args.output_dir.resolve()
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    results = run_peers(args.peers, args)
    print(
        f"\nseed {args.seed}, budget {args.budget_s:.0f} s, {args.threads} torch thread(s), device {args.device}, "
        f"{args.max_val_images or 'all'} val images, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
    )
    print(markdown_table(results))


if __name__ == "__main__":
    main()
