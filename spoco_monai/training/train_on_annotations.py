"""Train or fine-tune a model on a user's annotated volumes and write a self-contained model folder.

This is what ``spoco-monai train`` runs. It drives the bundle's own training workflow (``train.json`` layered on the
starting model's training configs, plus ``finetune.json`` when it starts from trained weights) with the user's
image/label pairs as its datalist, so the bundle and the command share every piece: data checks, sampling,
augmentation, the SPOCO trainer, checkpoints and resuming.

Real sparse labels (id > 0 annotated, 0 unlabeled, -1 ignored) are used whole: every annotated object is trained
on. ``sparse_fraction`` exists only to simulate an annotator on dense labels, and the record says which of the two
a model was trained with.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch
from monai.bundle import ConfigParser, ConfigWorkflow

from spoco_monai.bundle import DEFAULT_MODEL, bundle_config, bundle_model, voxel_size_warning
from spoco_monai.data.volume_io import open_volume
from spoco_monai.engines.checkpoint import load_network_weights
from spoco_monai.engines.time_budget import TimeBudget
from spoco_monai.inferers.settings import AFFINITY_CLUSTERINGS, SegmentationSettings
from spoco_monai.training.annotations import AnnotatedVolume, describe_volumes, summarize_pairs
from spoco_monai.training.held_out_choice import HeldOutChoice, choose_on_held_out
from spoco_monai.training.model_folder import TRAINING_FOLDER, is_model_folder, read_model_folder, write_model_folder
from spoco_monai.training.object_counts import count_objects, merge_warning
from spoco_monai.training.weak_annotations import CLICK_CONFIGS, annotation_label_images, annotation_overlays
from spoco_monai.transforms.simulated_annotator import chosen_count
from spoco_monai.transforms.sparse_manifest import SparseAnnotationManifest

__all__ = ["FineTuneRecipe", "SCRATCH", "train_on_annotations"]

SCRATCH = "scratch"
# the bundle's model whose architecture and settings a training from scratch takes, per dimensionality
SCRATCH_MODELS = {2: "dsb2018_nuclei_2d", 3: DEFAULT_MODEL}
FINETUNE_CONFIG = "configs/finetune.json"
# the config entries that define the network: a fine-tune takes them from its model's inference config (inference
# overlays such as dsb2018_inference.json set them), and the model folder from the trained network
ARCHITECTURE = (
    "in_channels", "embedding_dim", "foreground_head", "network_channels", "network_strides", "norm", "head_channels"
)
# the candidate weights a hold-out judges
TRAINED, STARTING = "trained", "starting"


@dataclass(frozen=True)
class FineTuneRecipe:
    """The training settings of ``spoco-monai train``; each default is explained in the bundle docs ("Your data").

    Attributes:
        iterations: optimiser steps (each on ``patches_per_volume`` patches).
        learning_rate_factor: fine-tuning learning rate as a factor of the model's training rate.
        max_instances: annotated objects drawn per patch for the loss (the rest of the patch's objects wait for
            another patch); None uses all of them.
        patch_size: training patch size; None keeps the starting model's.
        consistency_weight: a fine-tune's weight of the consistency term between the network and its moving-average
            teacher (None: the model's own, 1 for the shipped ones). It holds the network near what it knew while
            the few annotated objects pull it; 10 was the best of the recipes compared on the EM selection split
            (``bench/RESULTS.md``).
        holdout: the fraction of each volume's annotated objects kept out of training (a seeded choice, recorded
            in the sparse annotation manifest) to judge the result on
            (:func:`~spoco_monai.training.held_out_choice.choose_on_held_out`): the affinity kernel's
            ``affinity_delta_dist`` is re-chosen on them, and a fine-tune keeps its starting weights when those
            segment them better; 0 trains on every annotated object and keeps the trained weights and the starting
            model's scale.
        overrides: further bundle config entries, by name.
    """

    iterations: int = 300
    learning_rate_factor: float = 0.02
    max_instances: int | None = None
    patch_size: tuple[int, ...] | None = None
    consistency_weight: float | None = 10.0
    holdout: float = 0.0
    overrides: dict[str, Any] = field(default_factory=dict)


def train_on_annotations(
    images: Sequence[str | os.PathLike],
    labels: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    start_from: str = SCRATCH,
    bundle: str | os.PathLike = "bundle",
    validation_images: Sequence[str | os.PathLike] = (),
    validation_labels: Sequence[str | os.PathLike] = (),
    recipe: FineTuneRecipe | None = None,
    minutes: float | None = 15.0,
    sparse_fraction: float | None = None,
    annotated_fraction: float | None = None,
    annotation: str = "masks",
    grow_radius: float | None = None,
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Train a model on annotated volumes and write the model folder ``output``.

    Args:
        images: image paths (NIfTI, TIFF, ``file.h5:dataset``, zarr), 2D or 3D, channels first if any.
        labels: annotation paths, one per image. Masks: label images, id > 0 an annotated object, 0 unlabeled, -1
            ignored. Points: napari Points CSV files or point label images; scribbles: stroke label images; boxes:
            boxes CSV files (see :mod:`~spoco_monai.training.weak_annotations`).
        output: the model folder to write (see :mod:`~spoco_monai.training.model_folder`); its ``training``
            subfolder holds the checkpoints, and a rerun of the same command resumes from them.
        start_from: a model the bundle ships (e.g. ``"em3d_neurons"``) or a model folder to fine-tune; ``"scratch"``
            for random weights with the settings of the bundle's default model of the data's dimensionality, or
            ``"scratch:NAME"`` with those of the shipped model ``NAME``.
        bundle: the MONAI bundle directory.
        validation_images: images with dense labels to select the best weights on (by the model's key metric,
            the starting weights of a fine-tune included); without them the final weights are the model.
        validation_labels: their labels.
        recipe: the training settings (default :class:`FineTuneRecipe`).
        minutes: stop training once it has taken this many minutes, counted over every run that resumes it (the
            weights of the last step are kept); None: no limit.
        sparse_fraction: None (the default) uses the labels as annotated; a fraction p in (0, 1] simulates an
            annotator who labeled p of the objects of dense labels (benchmarks only).
        annotated_fraction: for a model with a foreground output, the fraction of the objects the labels annotate
            (its positive-unlabeled prior); None takes ``sparse_fraction``, or 1.0 for dense labels.
        annotation: what ``labels`` hold: ``"masks"``, ``"points"`` (clicks), ``"scribbles"`` (strokes) or
            ``"boxes"``.
        grow_radius: for points and scribbles, the largest distance in pixels of a grown mask's pixel from its
            object's clicks or strokes (about the objects' radius); None: the overlay's (8).
        seed: seeds every random choice of the training.
        progress: show a progress bar with the remaining time.
        log: receives the lines reported to the user.

    Returns:
        the model folder.

    Raises:
        ValueError: bad data (every problem named with its file), an unknown starting model, a bad setting, or a
            training to resume that was saved with other settings (see the bundle's ``resume_with_new_settings``).
        WorkDirectoryLockedError: another training writes the same model folder.
    """
    recipe = recipe or FineTuneRecipe()
    if not 0.0 <= recipe.holdout < 1.0:
        raise ValueError(f"holdout must be in [0, 1), found {recipe.holdout}.")
    if recipe.holdout and sparse_fraction is not None:
        raise ValueError("a hold-out works on real annotations; it cannot be combined with a simulated annotator.")
    bundle, output = Path(bundle).resolve(), Path(output).resolve()
    overlays, annotation_entries, radius = annotation_overlays(annotation, grow_radius, bundle)
    if annotation != "masks" and (recipe.holdout or sparse_fraction is not None):
        raise ValueError(
            f"a hold-out and a simulated annotator work on object masks; {annotation} have none to judge or subsample."
        )
    training_folder = output / TRAINING_FOLDER
    if annotation != "masks":
        labels = annotation_label_images(annotation, images, labels, training_folder / "annotations")
    start = _starting_point(bundle, start_from, images, labels)
    if annotation == "points":
        _use_click_model(start)
    start["training_configs"] = [*start["training_configs"], *(o for o in overlays if o not in start["training_configs"])]
    model_config = bundle_config(bundle, start["inference_configs"])
    dims = int(model_config.get_parsed_content("spatial_dims"))
    volumes = summarize_pairs(images, labels, dims)
    validation = summarize_pairs(validation_images, validation_labels, dims) if validation_images else []
    if recipe.holdout and not any(_held_out_count(volume.objects, recipe.holdout) for volume in volumes):
        log(
            f"hold-out: {recipe.holdout:g} of {', '.join(str(volume.objects) for volume in volumes)} annotated "
            "object(s) keeps none out of training (at least one per volume is trained on): all are trained on, and "
            "the trained weights and the model's clustering scale are kept unchecked"
        )
        recipe = dataclasses.replace(recipe, holdout=0.0)
    for line in _report(start, volumes, validation, model_config, sparse_fraction, recipe.holdout, (annotation, radius)):
        log(line)

    training_folder.mkdir(parents=True, exist_ok=True)
    overrides = _training_overrides(
        bundle, training_folder, start, volumes, validation, recipe, sparse_fraction, annotated_fraction, seed, progress
    )
    overrides.update(annotation_entries)
    if start["weights"] is not None:
        overrides.update(_architecture(model_config))
    flow = ConfigWorkflow(
        config_file=[str(bundle / name) for name in start["training_configs"]], workflow_type=None, **overrides
    )
    # MONAI's LoadImage reports each reader it tries before the one that fits; the data were checked above
    logging.getLogger("LoadImage").setLevel(logging.WARNING)
    _initialize(flow)
    trainer = flow.parser.get_parsed_content("train#trainer")
    if progress:
        # the progress bar replaces the per-iteration loss lines
        trainer.logger.setLevel(logging.WARNING)
    if minutes is not None:
        # the budget covers the whole training: a resumed run gets what its earlier runs left
        TimeBudget(minutes * 60).attach(trainer)
    log(_time_estimate(flow.parser, recipe.iterations, minutes))
    began = time.perf_counter()
    flow.run()
    seconds = time.perf_counter() - began
    flow.finalize()

    iterations = int(trainer.state.iteration)
    if is_model_folder(output) and read_model_folder(output)["iterations"] == iterations:
        # a rerun of a finished training trains nothing: the record keeps the time the training took
        seconds = max(seconds, float(read_model_folder(output)["seconds"]))
    stopped = f", stopped at the {minutes:g}-minute limit" if iterations < recipe.iterations else ""
    inference_config = _inference_config(bundle, start, overrides, recipe.overrides)
    inference_config.update(_architecture(flow.parser))
    network, judgement = _kept_network(flow, start, validation, volumes, recipe, overrides, inference_config, log)
    record = _record(start, volumes, validation, recipe, sparse_fraction, seed, iterations, seconds, stopped, overrides)
    record["description"] += judgement.pop("description", "")
    record.update(judgement, annotation=annotation)
    if radius is not None:
        record["grow_radius"] = radius
    write_model_folder(output, network.state_dict(), inference_config, record)
    log(
        f"trained {iterations} of {recipe.iterations} iterations in {seconds / 60:.1f} min{stopped}; model folder "
        f"{output} (segment with: spoco-monai segment IMAGE OUTPUT --model {output})"
    )
    return output


def _kept_network(
    flow: ConfigWorkflow,
    start: dict[str, Any],
    validation: Sequence[AnnotatedVolume],
    volumes: Sequence[AnnotatedVolume],
    recipe: FineTuneRecipe,
    overrides: dict[str, Any],
    inference_config: dict[str, Any],
    log: Callable[[str], None],
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network the model folder keeps, and what judged it, as record entries: the validation data's best weights,
    the hold-out's choice (which also writes its clustering scale into ``inference_config``), and, for a fine-tune
    that keeps its trained weights, the objects both weights find in the training images. A ``description`` entry is
    text to add to the record's description."""
    bundle = Path(overrides["bundle_root"])
    network = flow.parser.get_parsed_content("saved_network")
    best_path = Path(flow.parser.get_parsed_content("ckpt_dir")) / "model.pt"
    judgement: dict[str, Any] = {}
    kept = TRAINED
    if validation and best_path.is_file():
        load_network_weights(network, best_path)
        state = flow.parser.get_parsed_content("validate#evaluator").state
        best = {
            "metric": flow.parser.get_parsed_content("key_metric_name"),
            "value": float(state.best_metric),
            # the evaluator runs at the trainer's epochs; epoch 0 is the validation before training
            "iteration": int(state.best_metric_epoch) * int(flow.parser.get_parsed_content("iterations_per_epoch")),
        }
        _report_best(best, start, log)
        judgement["validation_best"] = best
        if best["iteration"] == 0 and start["weights"] is not None:
            kept = STARTING
            judgement["description"] = f"; the validation data kept the starting weights of {start['name']}"
    if recipe.holdout:
        judges = _held_out_objects(volumes, Path(overrides["sparse_manifest"]))
        network, choice = _choose_on_held_out(network, start, inference_config, bundle, volumes, judges, log)
        judgement["held_out_objects"] = {
            volume.label: np.unique(judge[judge > 0]).tolist() for volume, judge in zip(volumes, judges)
        }
        judgement["kept_weights"] = choice.weights
        judgement["held_out_scores"] = {
            name: {str(scale): score for scale, score in table.items()} for name, table in choice.scores.items()
        }
        if choice.weights == STARTING:
            kept = STARTING
            held_out = f"; the held-out objects kept the starting weights of {start['name']}"
            judgement["description"] = judgement.get("description", "") + held_out
    if start["weights"] is not None and kept == TRAINED:
        judgement["object_counts"] = _compare_object_counts(network, start, inference_config, bundle, volumes, log)
    return network, judgement


def _report_best(best: dict[str, Any], start: dict[str, Any], log: Callable[[str], None]) -> None:
    """Say which weights the validation data chose (``best``: the metric's name, its best value, the iteration)."""
    score = f"{best['metric']} {best['value']:.4f}"
    if best["iteration"] == 0 and start["weights"] is not None:
        log(
            f"validation: the starting weights of {start['name']} scored best ({score}); the model folder keeps them: "
            "training on these annotations did not improve the model on your validation data"
        )
    else:
        log(f"validation: the weights of iteration {best['iteration']} scored best ({score})")


def _initialize(flow: ConfigWorkflow) -> None:
    """``flow.initialize()``, raising the error of the config entry that failed (another training writing the
    folder, a resume with other settings) rather than MONAI's wrapper of it."""
    try:
        flow.initialize()
    except RuntimeError as error:
        cause: BaseException = error
        while isinstance(cause, RuntimeError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if cause is error:
            raise
        raise cause from None


def _starting_point(
    bundle: Path, start_from: str, images: Sequence[str | os.PathLike], labels: Sequence[str | os.PathLike]
) -> dict[str, Any]:
    """The configs and weights a training starts from: a shipped model, a model folder, or scratch."""
    if start_from == SCRATCH or start_from.startswith(f"{SCRATCH}:"):
        _, _, like = start_from.partition(":")
        if not like:
            like = SCRATCH_MODELS[len(summarize_pairs(images[:1], labels[:1])[0].shape)]
        entry = bundle_model(bundle, like)
        return {**_configs_of(entry), "finetune_settings": {}, "name": start_from, "weights": None, "base": like}
    entry = bundle_model(bundle, start_from)
    weights = Path(entry["model_path"])
    weights = weights if weights.is_absolute() else bundle / weights
    record = entry["record"]
    base = record["base_model"] if record is not None else entry["name"]
    return {**_configs_of(entry), "name": entry["name"], "weights": str(weights), "base": base}


def _use_click_model(start: dict[str, Any]) -> None:
    """Make a training from clicks start from scratch with a localisation channel, or from a model trained from
    clicks; any other starting model has no localisation channel to train."""
    click_model = CLICK_CONFIGS["inference"][0]
    if start["weights"] is None:
        start["inference_configs"] = [*start["inference_configs"], click_model]
    elif click_model not in start["inference_configs"]:
        raise ValueError(
            f"training from clicks needs a model with a localisation channel, which {start['name']} has not: start "
            f"from scratch (--from {SCRATCH}) or from a model folder trained from clicks."
        )


def _configs_of(entry: dict[str, Any]) -> dict[str, Any]:
    record = entry["record"]
    return {
        "inference_configs": entry["configs"] if record is None else record["inference_configs"],
        "training_configs": list(entry["training_configs"]),
        "settings": {} if record is None else record["settings"],
        "finetune_settings": entry["finetune_settings"],
    }


def _report(
    start: dict[str, Any],
    volumes: Sequence[AnnotatedVolume],
    validation: Sequence[AnnotatedVolume],
    model_config: ConfigParser,
    sparse_fraction: float | None,
    holdout: float,
    annotation: tuple[str, float | None],
) -> list[str]:
    """What the training found and will do, for the user, before it starts (``annotation``: its kind and the
    radius masks grow to from clicks or strokes)."""
    lines = [
        "starting from " + ("scratch (random weights)" if start["weights"] is None else f"{start['name']} ({start['weights']})")
    ]
    lines += describe_volumes(volumes)
    objects = sum(volume.objects for volume in volumes)
    kind, radius = annotation
    if kind == "boxes":
        lines.append(
            f"labels: boxes around {objects} object(s) in {len(volumes)} image(s); each grew into a mask inside its box "
            f"(a seeded watershed of the image's edges), saved as {', '.join(volume.label for volume in volumes)}: "
            "open them in napari to check; SPOCO's losses train on the masks"
        )
    elif kind != "masks":
        marks = "clicks" if kind == "points" else "strokes"
        background = sum(volume.ignored_voxels for volume in volumes)
        lines.append(
            f"labels: {marks} on {objects} object(s) in {len(volumes)} image(s) ({background} background pixel(s) "
            f"marked -1); every object grows into a mask within {radius:g} pixels of its {marks} over the image's "
            "edges (--grow-radius: about the objects' radius), and "
            + (
                "WISE's anchor similarity loss trains the embeddings on the masks, a localisation channel on the clicks"
                if kind == "points"
                else "SPOCO's losses train on the masks"
            )
        )
    elif holdout:
        lines.append(
            f"labels: real annotations; hold-out: {holdout:g} of each volume's {objects} annotated object(s) are kept "
            "out of training (a seeded choice, recorded in training/sparse_annotation.json) to judge the result by: "
            "the clustering scale is chosen on them, and a fine-tune keeps its starting weights if those do better; "
            "the others are trained on"
        )
    elif sparse_fraction is None:
        lines.append(
            f"labels: real annotations, used whole: all {objects} annotated object(s) in {len(volumes)} volume(s) are "
            "trained on (0 = unlabeled, -1 = ignored)"
        )
    else:
        lines.append(
            f"labels: simulated annotator: {sparse_fraction:g} of the {objects} objects of the dense labels are kept "
            "per volume (the rest become unlabeled); the kept ids are recorded in training/sparse_annotation.json"
        )
    border = start["finetune_settings"].get("unlabeled_border", 0) if start["weights"] is not None else 0
    if border:
        lines.append(
            f"labels: the outer {border} voxel(s) of every annotated object are left unlabeled in training, as "
            f"{start['base']} was trained (its data leave the boundaries between objects unlabeled); your label "
            "files are not changed"
        )
    if validation:
        starting = ", the starting ones included" if start["weights"] is not None else ""
        lines.append(f"validation: {len(validation)} volume(s) with dense labels select the best weights{starting}")
    else:
        lines.append("validation: none given (--val-images/--val-labels); the weights of the last iteration are kept")
        if start["weights"] is not None:
            lines.append(
                f"warning: nothing will check that training improves {start['name']}: a few annotated objects can make "
                "it worse (bench/RESULTS.md); a densely labeled crop given with --val-images/--val-labels scores the "
                "starting weights too and keeps them when training does not beat them"
            )
    trained = model_config.get_parsed_content("element_size") if "element_size" in model_config else None
    for volume in volumes:
        size_warning = voxel_size_warning(volume.element_size, trained) if start["weights"] is not None else None
        if size_warning is not None:
            lines.append(f"warning: {volume.image}'s {size_warning}")
    return lines


def _training_overrides(
    bundle: Path,
    training_folder: Path,
    start: dict[str, Any],
    volumes: Sequence[AnnotatedVolume],
    validation: Sequence[AnnotatedVolume],
    recipe: FineTuneRecipe,
    sparse_fraction: float | None,
    annotated_fraction: float | None,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    """The bundle config entries a training on these volumes replaces."""
    pairs = [{"image": volume.image, "label": volume.label} for volume in volumes]
    # without validation data the training volumes stand in for the (disabled) validation's image logging only
    validation_pairs = [{"image": volume.image, "label": volume.label} for volume in validation] or pairs
    fraction = 1.0 - recipe.holdout if sparse_fraction is None else float(sparse_fraction)
    iterations = int(recipe.iterations)
    overrides: dict[str, Any] = {
        **start["settings"],
        "bundle_root": str(bundle),
        "output_dir": str(training_folder),
        "datalist": {"training": pairs, "validation": validation_pairs},
        "train_region": "@whole_region",
        "report_region": "@whole_region",
        "sparse": True,
        # in a user's labels 0 is unlabeled, never background, also for models trained with a background object
        "keep_background": False,
        "sparse_fraction": fraction,
        "annotated_fraction": (1.0 if sparse_fraction is None else fraction)
        if annotated_fraction is None
        else float(annotated_fraction),
        "sparse_manifest": str(training_folder / "sparse_annotation.json"),
        "num_iterations": iterations,
        "val_interval": max(1, iterations // 3) if validation else iterations,
        "checkpoint_interval": max(1, min(50, iterations)),
        "run_validation": bool(validation),
        "progress_bar": progress,
        "seed": int(seed),
        "num_workers": 0,
    }
    if recipe.max_instances is not None:
        overrides["max_instances"] = int(recipe.max_instances)
    if recipe.patch_size is not None:
        overrides["patch_size"] = [int(size) for size in recipe.patch_size]
    if start["weights"] is not None:
        start["training_configs"] = [*start["training_configs"], FINETUNE_CONFIG]
        overrides["source_checkpoint"] = start["weights"]
        overrides["learning_rate_factor"] = float(recipe.learning_rate_factor)
        if recipe.consistency_weight is not None:
            overrides["loss_weights#consistency"] = float(recipe.consistency_weight)
        overrides.update(start["finetune_settings"])
    overrides.update(recipe.overrides)
    return overrides


def _time_estimate(parser: ConfigParser, iterations: int, minutes: float | None) -> str:
    """An estimate of the training time from one timed forward and backward pass of the network (plus teacher)."""
    network = parser.get_parsed_content("network")
    device = parser.get_parsed_content("device")
    patch = [int(size) for size in parser.get_parsed_content("patch_size")]
    batch = int(parser.get_parsed_content("patches_per_volume")) * int(parser.get_parsed_content("batch_size"))
    channels = int(parser.get_parsed_content("in_channels"))
    sample = torch.randn(batch, channels, *patch, device=device)
    was_training = network.training
    network.train()
    began = time.perf_counter()
    network(sample).square().mean().backward()
    with torch.no_grad():
        network(sample)
    seconds = time.perf_counter() - began
    network.zero_grad(set_to_none=True)
    network.train(was_training)
    # the loss and the data pipeline add about half the network's time on the bundle's models (bench/losses.py)
    estimate = 1.5 * seconds * iterations
    limit = (
        f"; the {minutes:g}-minute limit stops it after about {int(minutes * 60 / (1.5 * seconds))} of them"
        if minutes is not None and estimate > minutes * 60
        else ""
    )
    return (
        f"training {iterations} iterations of {batch} patch(es) of {'x'.join(map(str, patch))} on "
        f"{device}: about {estimate / 60:.1f} min (from one timed network step; the progress bar refines it){limit}"
    )


def _architecture(config: ConfigParser) -> dict[str, Any]:
    """The network's :data:`ARCHITECTURE` entries in ``config``; model folders written before ``head_channels``
    existed lack it, and their networks have none."""
    return {key: config.get_parsed_content(key) if key in config else None for key in ARCHITECTURE}


def _inference_config(
    bundle: Path, start: dict[str, Any], overrides: dict[str, Any], user_entries: dict[str, Any]
) -> dict[str, Any]:
    """The complete inference config of the trained network: the starting model's, with the run's settings and the
    user's config entries (``--set``) that the inference config has (the network's architecture among them)."""
    config = bundle_config(bundle, start["inference_configs"]).get()
    for key in ("patch_size", *start["settings"], *(key for key in user_entries if key in config)):
        if key in overrides:
            config[key] = overrides[key]
    return config


def _choose_on_held_out(
    network: torch.nn.Module,
    start: dict[str, Any],
    inference_config: dict[str, Any],
    bundle: Path,
    volumes: Sequence[AnnotatedVolume],
    judges: Sequence[np.ndarray],
    log: Callable[[str], None],
) -> tuple[torch.nn.Module, HeldOutChoice]:
    """Judge the trained weights, and a fine-tune's starting weights, on the held-out objects at every candidate
    clustering scale; write the chosen scale into the inference config and return the chosen network."""
    settings = _settings(inference_config, bundle)
    networks = {TRAINED: network.eval()}
    if start["weights"] is not None:
        networks[STARTING] = load_network_weights(copy.deepcopy(network), start["weights"]).eval()
    choice = choose_on_held_out(networks, settings, volumes, judges)
    inference_config["affinity_delta_dist"] = choice.affinity_delta_dist
    for name, table in choice.scores.items():
        scores = ", ".join(f"{scale:g}: {score:.3f}" for scale, score in table.items())
        log(f"held-out objects' Rand error with the {name} weights, per affinity_delta_dist: {scores}")
    if choice.weights == STARTING:
        log(
            f"the held-out objects come out better with the starting weights of {start['name']} "
            f"({choice.error:.3f} against {min(choice.scores[TRAINED].values()):.3f}): the model folder keeps them; "
            "annotate more objects (or other ones) for the training to help"
        )
    if settings.clustering in AFFINITY_CLUSTERINGS:
        log(
            f"clustering scale affinity_delta_dist chosen on the held-out objects: {choice.affinity_delta_dist:g} "
            f"(the model's {settings.affinity_delta_dist:g})"
        )
    return networks[choice.weights], choice


def _compare_object_counts(
    network: torch.nn.Module,
    start: dict[str, Any],
    inference_config: dict[str, Any],
    bundle: Path,
    volumes: Sequence[AnnotatedVolume],
    log: Callable[[str], None],
) -> dict[str, int]:
    """Count the objects the trained and the starting weights find in the training images, both segmented with the
    model folder's settings; say both counts, and warn when the fine-tune finds markedly fewer (it merges)."""
    starting = load_network_weights(copy.deepcopy(network), start["weights"]).eval()
    log("segmenting the training image(s) with the starting and the trained weights, to compare their object counts")
    counts = count_objects(volumes, {TRAINED: network.eval(), STARTING: starting}, _settings(inference_config, bundle))
    log(
        f"objects found in the training image(s) (the central 128^3 voxels of larger ones): {counts[STARTING]} with "
        f"the starting weights of {start['name']}, {counts[TRAINED]} with the trained ones"
    )
    warning = merge_warning(counts[STARTING], counts[TRAINED], start["name"], volumes[0].image)
    if warning is not None:
        log(warning)
    return counts


def _settings(inference_config: dict[str, Any], bundle: Path) -> SegmentationSettings:
    """The segmentation settings of an inference config."""
    parser = ConfigParser(inference_config)
    parser["bundle_root"] = str(bundle)
    return parser.get_parsed_content("segmentation")


def _held_out_count(objects: int, holdout: float) -> int:
    """How many of a volume's annotated objects a hold-out keeps out of training (the manifest's count)."""
    return objects - chosen_count(1.0 - holdout, objects)


def _held_out_objects(volumes: Sequence[AnnotatedVolume], manifest_path: Path) -> list[np.ndarray]:
    """Per volume, its labels holding only the annotated objects the training's manifest did not keep."""
    kept = SparseAnnotationManifest(manifest_path).read()
    judges = []
    for volume in volumes:
        with open_volume(volume.label) as label:
            values = np.asarray(label[...]).reshape(volume.shape).astype(np.int64)
        trained = kept.get(os.path.basename(volume.label), [])
        judges.append(np.where((values > 0) & ~np.isin(values, trained), values, 0))
    return judges


def _record(
    start: dict[str, Any],
    volumes: Sequence[AnnotatedVolume],
    validation: Sequence[AnnotatedVolume],
    recipe: FineTuneRecipe,
    sparse_fraction: float | None,
    seed: int,
    iterations: int,
    seconds: float,
    stopped: str,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    objects = sum(volume.objects for volume in volumes)
    labels = "real sparse annotations" if sparse_fraction is None else f"simulated annotator (fraction {sparse_fraction:g})"
    origin = f"trained from scratch ({start['base']}'s settings)" if start["weights"] is None else f"fine-tuned from {start['name']}"
    settings = {key: overrides[key] for key in ("patch_size", "max_instances") if key in overrides}
    applied = {key: overrides[key] for key in start["finetune_settings"] if key in overrides}
    return {
        "description": (
            f"{origin} on {objects} annotated object(s) in {len(volumes)} volume(s) ({labels}); {iterations} "
            f"iterations, {seconds / 60:.1f} min{stopped}, seed {seed}"
        ),
        "data_source": ", ".join(volume.image for volume in volumes),
        "base_model": start["base"],
        "started_from": start["name"],
        "start_weights": start["weights"],
        "labels": labels,
        "sparse_fraction": sparse_fraction,
        "training_data": [volume.as_record() for volume in volumes],
        "validation_data": [volume.as_record() for volume in validation],
        "annotated_objects": objects,
        "iterations": iterations,
        "planned_iterations": recipe.iterations,
        "learning_rate_factor": recipe.learning_rate_factor if start["weights"] is not None else None,
        "seconds": round(seconds, 1),
        "seed": seed,
        "inference_configs": list(start["inference_configs"]),
        "training_configs": [name for name in start["training_configs"] if name != FINETUNE_CONFIG],
        "settings": settings,
        "finetune_settings": applied,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"monai": monai.__version__, "torch": torch.__version__},
    }
