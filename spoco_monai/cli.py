"""Command line: ``spoco-monai train`` (a model from annotated volumes) and ``spoco-monai segment`` (whole volumes).

``segment --workers N`` runs the blocks on a dask LocalCluster of N worker processes, ``segment --scheduler ADDRESS``
on a running dask cluster (see :mod:`spoco_monai.inferers.dask_cluster`); without either it runs in this process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser

from .bundle import (
    DEFAULT_BUNDLE,
    DEFAULT_MODEL,
    SETTINGS_KEY,
    bundle_model,
    bundle_settings,
    input_mismatch_warnings,
    load_bundle_network,
    model_names,
)
from .data.disk_errors import DISK_FULL, describe_os_error
from .data.volume_io import check_can_create, open_volume
from .inferers.dask_cluster import DaskNotInstalledError, SchedulerUnreachableError
from .inferers.segment_volume import WORK_DIRECTORY_SUFFIX, segment_volume
from .inferers.settings import BLENDS, CLUSTERING_OPTIONS, CLUSTERINGS, SegmentationSettings
from .inferers.work_lock import WorkDirectoryLock, WorkDirectoryLockedError
from .training.train_on_annotations import SCRATCH, FineTuneRecipe, train_on_annotations

def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``spoco-monai`` command."""
    parser = argparse.ArgumentParser(prog="spoco-monai", description="SPOCO instance segmentation with MONAI.")
    commands = parser.add_subparsers(dest="command", required=True)
    segment = commands.add_parser(
        "segment",
        help="segment a whole volume into instances, block by block",
        description=(
            "Segment INPUT (NIfTI, TIFF, file.h5:dataset, zarr) with the network of a MONAI bundle and write "
            "the instance labels to OUTPUT (zarr or file.h5:dataset chunked; NIfTI or TIFF from memory). "
            f"The settings are the bundle's ('{SETTINGS_KEY}' in its inference config), so the labels are those "
            "of the bundle's inference; every option below replaces one of them. An interrupted run resumes "
            "from OUTPUT.spoco-work when started again with the same settings."
        ),
    )
    segment.add_argument("input", help="input volume, (C, *S) or (*S)")
    segment.add_argument("output", help="output volume (must not exist unless --overwrite)")
    segment.add_argument("--bundle", default=DEFAULT_BUNDLE, help=f"MONAI bundle directory (default: {DEFAULT_BUNDLE})")
    segment.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"a model the bundle ships, by name ({', '.join(model_names(DEFAULT_BUNDLE)) or 'see its metadata.json'}), "
        "or a model folder written by 'spoco-monai train'; sets the configs and weights, with the model's settings "
        f"(default: {DEFAULT_MODEL})",
    )
    segment.add_argument("--checkpoint", help="weights (default: the model's, e.g. BUNDLE/models/model.pt)")
    segment.add_argument("--config", nargs="+", help="bundle config files defining network_def (default: the model's)")
    bundle_default = "(default: the bundle's)"
    segment.add_argument("--roi-size", nargs="+", type=int, help=f"window size per axis {bundle_default}")
    segment.add_argument("--overlap", type=float, help=f"window overlap in [0, 1) {bundle_default}")
    segment.add_argument("--block-shape", nargs="+", type=int, help=f"block core size per axis {bundle_default}")
    segment.add_argument("--halo", nargs="+", type=int, help=f"minimum block halo per axis in voxels {bundle_default}")
    segment.add_argument("--blend", choices=BLENDS, help=f"what the windows blend {bundle_default}")
    segment.add_argument(
        "--clustering", choices=CLUSTERINGS, help=f"clustering of the blended prediction {bundle_default}"
    )
    segment.add_argument("--min-size", type=int, help=f"minimum object size in voxels {bundle_default}")
    segment.add_argument(
        "--min-distance",
        type=float,
        help=f"with --clustering watershed, the smallest distance between two seeds in voxels {bundle_default}",
    )
    segment.add_argument(
        "--boundary-threshold",
        type=float,
        help="with --clustering watershed, the border strength in (0, 1] above which a voxel is not an object's "
        f"interior (dense tissue) {bundle_default}",
    )
    segment.add_argument(
        "--foreground",
        choices=("none", "network", "intensity"),
        help="where objects may be: everywhere, the network's foreground channel, or above the Otsu threshold "
        f"{bundle_default}",
    )
    segment.add_argument(
        "--foreground-threshold",
        type=float,
        help=f"foreground probability above which a voxel is an object's, with --foreground network {bundle_default}",
    )
    segment.add_argument(
        "--affinity-delta-dist",
        type=float,
        help="width delta_d of the affinity kernel: embeddings 2 delta_d apart have affinity 0 (the bundle's "
        f"affinity_delta_dist) {bundle_default}",
    )
    segment.add_argument(
        "--normalize",
        choices=("zscore", "none"),
        help="intensity normalisation before the network: zscore uses the whole volume's mean and std, as MONAI's "
        f"NormalizeIntensity; none feeds the values as stored {bundle_default}",
    )
    segment.add_argument("--sw-batch-size", type=int, help=f"windows per forward pass {bundle_default}")
    segment.add_argument(
        "--test-time-flips",
        choices=("on", "off"),
        help="on: also run every window mirrored along each combination of its axes and average the affinities "
        f"(4x the network time in 2D, 8x in 3D) {bundle_default}",
    )
    segment.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    segment.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUTPUT once the new one is complete (for file.h5:dataset or volume.zarr:array, that dataset only)",
    )
    segment.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    cluster = segment.add_mutually_exclusive_group()
    cluster.add_argument(
        "--workers", type=int, help="run the blocks on a dask LocalCluster of N worker processes (default: none)"
    )
    cluster.add_argument(
        "--scheduler",
        help="run the blocks on the running dask cluster with this scheduler address, e.g. tcp://10.0.0.1:8786 "
        "(input, output and OUTPUT.spoco-work on a file system all workers share)",
    )
    segment.add_argument(
        "--torch-threads", type=int, help="torch threads per worker task (default: 1 with --workers, else the workers')"
    )
    _add_train_parser(commands)
    return parser


def _add_train_parser(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="train or fine-tune a model on your images and a few annotated objects",
        description=(
            "Train a model on IMAGES and their LABELS (id > 0 an annotated object, 0 unlabeled, -1 ignored: a napari "
            "Labels layer saved as TIFF works as it is; HDF5/zarr as file.h5:dataset; NIfTI) and write a model folder "
            "that 'spoco-monai segment --model FOLDER' uses. Every annotated object is trained on. Before training it "
            "prints the volumes, their annotated objects and an estimated time; a rerun of the same command resumes."
        ),
    )
    train.add_argument("--images", nargs="+", required=True, help="image files, 2D or 3D, channels first if any")
    given = train.add_mutually_exclusive_group(required=True)
    given.add_argument(
        "--labels", nargs="+", help="label files, one per image, in the same order: id > 0 an annotated object's mask, "
        "0 unlabeled, -1 ignored"
    )
    given.add_argument(
        "--points", nargs="+", help="instead of masks, clicks: one napari Points CSV file (or point label image) per "
        "image; each object's clicks carry its id in a 'label' column (-1 a background click), or every point is an "
        "object; trains from scratch or from a model folder trained from clicks"
    )
    given.add_argument(
        "--scribbles", nargs="+", help="instead of masks, strokes: one label image per image, an object's id on its "
        "strokes, -1 on background strokes, 0 elsewhere"
    )
    given.add_argument(
        "--boxes", nargs="+", help="instead of masks, boxes: one CSV file per image with rows label,start-0,start-1"
        "[,start-2],stop-0,... (half-open, in pixels); each grows into a mask inside its box, saved for you to check"
    )
    train.add_argument(
        "--grow-radius", type=float, help="with --points or --scribbles: how far in pixels a mask grows from its "
        "object's clicks or strokes, about the objects' radius (default: 8)"
    )
    train.add_argument("--output", required=True, help="the model folder to write")
    train.add_argument(
        "--from",
        dest="start_from",
        default=SCRATCH,
        help=f"a model the bundle ships to fine-tune ({', '.join(model_names(DEFAULT_BUNDLE))}), a model folder, "
        f"'{SCRATCH}' (random weights), or '{SCRATCH}:NAME' (random weights, the settings of model NAME) "
        f"(default: {SCRATCH})",
    )
    train.add_argument("--val-images", nargs="+", default=[], help="images with dense labels to select the weights on")
    train.add_argument("--val-labels", nargs="+", default=[], help="their labels")
    defaults = FineTuneRecipe()
    train.add_argument("--iterations", type=int, default=defaults.iterations, help="optimiser steps (default: %(default)s)")
    train.add_argument(
        "--minutes", type=float, default=15.0, help="stop after this many minutes, keeping the last weights (default: 15)"
    )
    train.add_argument(
        "--learning-rate-factor",
        type=float,
        default=defaults.learning_rate_factor,
        help="fine-tuning learning rate as a factor of the model's (default: %(default)s)",
    )
    train.add_argument("--patch-size", nargs="+", type=int, help="training patch size per axis (default: the model's)")
    train.add_argument("--max-instances", type=int, help="annotated objects per patch in the loss (default: all)")
    train.add_argument(
        "--sparse-fraction",
        type=float,
        help="benchmarks only: simulate an annotator who labeled this fraction of the objects of DENSE labels",
    )
    train.add_argument(
        "--annotated-fraction",
        type=float,
        help="for models with a foreground output: the fraction of all objects your labels annotate (default: 1.0)",
    )
    train.add_argument(
        "--holdout",
        type=float,
        default=0.0,
        help="keep this fraction of the annotated objects out of training and re-choose the clustering scale "
        "(affinity_delta_dist) on them (default: 0, train on all and keep the model's scale)",
    )
    train.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    train.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="replace entries of the bundle's training config (VALUE as JSON, else text), e.g. "
        "loss_weights#consistency=2 ('Settings' in the bundle docs)",
    )
    train.add_argument("--bundle", default=DEFAULT_BUNDLE, help=f"MONAI bundle directory (default: {DEFAULT_BUNDLE})")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _train(args: argparse.Namespace) -> int:
    recipe = FineTuneRecipe(
        iterations=args.iterations,
        learning_rate_factor=args.learning_rate_factor,
        max_instances=args.max_instances,
        patch_size=tuple(args.patch_size) if args.patch_size else None,
        holdout=args.holdout,
    )
    try:
        recipe = dataclasses.replace(recipe, overrides=_config_entries(args.set))
        given = {"masks": args.labels, "points": args.points, "scribbles": args.scribbles, "boxes": args.boxes}
        annotation = next(kind for kind, files in given.items() if files)
        train_on_annotations(
            args.images,
            given[annotation],
            args.output,
            start_from=args.start_from,
            bundle=args.bundle,
            validation_images=args.val_images,
            validation_labels=args.val_labels,
            recipe=recipe,
            minutes=args.minutes,
            sparse_fraction=args.sparse_fraction,
            annotated_fraction=args.annotated_fraction,
            annotation=annotation,
            grow_radius=args.grow_radius,
            seed=args.seed,
            progress=not args.no_progress,
            log=lambda line: print(f"spoco-monai train: {line}", file=sys.stderr),
        )
    except (
        ValueError, TypeError, WorkDirectoryLockedError, DaskNotInstalledError, SchedulerUnreachableError
    ) as error:
        print(f"spoco-monai train: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"spoco-monai train: error: {describe_os_error(error)}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spoco-monai`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        return _run_segment(args)
    except KeyboardInterrupt:
        print(
            f"\nspoco-monai {args.command}: interrupted; run the same command again to resume where it stopped.",
            file=sys.stderr,
        )
        return 130


def _run_segment(args: argparse.Namespace) -> int:
    return _segment(args, args.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def command_line_settings(
    args: argparse.Namespace, config: ConfigParser, device: str | torch.device
) -> SegmentationSettings:
    """The bundle's settings with the options given on the command line replacing theirs.

    Raises:
        ValueError: the bundle has no settings and no ``--roi-size`` is given, or an option is invalid.
    """
    if SETTINGS_KEY not in config and args.roi_size is not None:
        settings = SegmentationSettings(args.roi_size)
    else:
        settings = bundle_settings(config)
    given = {
        "roi_size": args.roi_size,
        "overlap": args.overlap,
        "block_shape": _one_or_many(args.block_shape),
        "halo": _one_or_many(args.halo),
        "blend": args.blend,
        "clustering": args.clustering,
        "affinity_delta_dist": args.affinity_delta_dist,
        "foreground_threshold": args.foreground_threshold,
        "sw_batch_size": args.sw_batch_size,
        "device": device,
    }
    changes: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
    if args.foreground is not None:
        changes["foreground"] = None if args.foreground == "none" else args.foreground
    if args.normalize is not None:
        changes["normalize"] = args.normalize == "zscore"
    if args.test_time_flips is not None:
        changes["test_time_flips"] = args.test_time_flips == "on"
    options = dict(settings.clustering_kwargs)
    if args.clustering is not None and args.clustering != settings.clustering:
        # the bundle's options of another clustering do not apply to this one
        dropped = sorted(set(options) - CLUSTERING_OPTIONS[args.clustering])
        options = {name: value for name, value in options.items() if name not in dropped}
        if dropped:
            print(
                f"spoco-monai segment: clustering {args.clustering}: the bundle's clustering options {dropped} "
                f"belong to {settings.clustering} and are left out.",
                file=sys.stderr,
            )
    for name in ("min_size", "min_distance", "boundary_threshold"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if options != dict(settings.clustering_kwargs):
        changes["clustering_kwargs"] = options
    return dataclasses.replace(settings, **changes)


def _segment(args: argparse.Namespace, device: str) -> int:
    lock = None
    try:
        # before the lock file is created beside the output: a folder that cannot hold it is named as such
        output = check_can_create(args.output, args.overwrite, "--overwrite")
        # before reading the whole input: a second run on this output stops at once
        lock = WorkDirectoryLock(f"{output.file}{WORK_DIRECTORY_SUFFIX}")
        model = bundle_model(args.bundle, args.model)
        checkpoint = args.checkpoint or Path(args.bundle) / model["model_path"]
        network, config = load_bundle_network(args.bundle, checkpoint, args.config or model["configs"], device)
        settings = command_line_settings(args, config, device)
        with open_volume(args.input) as volume:
            warnings = input_mismatch_warnings(volume, config, args.bundle)
        print(f"spoco-monai segment: {_model_summary(model, args.checkpoint)}", file=sys.stderr)
        if settings.test_time_flips:
            passes = 2**settings.spatial_dims
            print(
                f"spoco-monai segment: test-time flips on: every window runs {passes} times (mirrored) and its "
                "affinities are averaged; --test-time-flips off is faster.",
                file=sys.stderr,
            )
        for warning in warnings:
            print(f"spoco-monai segment: warning: {warning}", file=sys.stderr)
        result = segment_volume(
            args.input, network, settings, output=args.output, overwrite=args.overwrite, progress=not args.no_progress,
            workers=args.workers, scheduler=args.scheduler, torch_threads=args.torch_threads,
            report=lambda line: print(f"spoco-monai segment: {line}", file=sys.stderr),
        )
    except (
        ValueError, TypeError, WorkDirectoryLockedError, DaskNotInstalledError, SchedulerUnreachableError
    ) as error:
        print(f"spoco-monai segment: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        # the finished blocks stay in the work directory, so the same command resumes once there is space
        retry = " Free space, then run the same command again: it resumes." if error.errno in DISK_FULL else ""
        print(f"spoco-monai segment: error: {describe_os_error(error)}{retry}", file=sys.stderr)
        return 1
    finally:
        if lock is not None:
            lock.release()
    print(result)
    return 0


def _config_entries(assignments: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as config entries; a VALUE that is not JSON is kept as text.

    Raises:
        ValueError: an assignment without ``=``.
    """
    entries = {}
    for assignment in assignments:
        key, separator, value = assignment.partition("=")
        if not separator or not key:
            raise ValueError(f"--set expects KEY=VALUE, found {assignment!r}.")
        try:
            entries[key] = json.loads(value)
        except json.JSONDecodeError:
            entries[key] = value
    return entries


def _model_summary(model: dict[str, Any], checkpoint: str | None) -> str:
    """One line on the model a segmentation uses: its name and the first sentence of its description."""
    if checkpoint is not None:
        return f"the network and settings of model {model['name']} with the weights {checkpoint}"
    first_sentence = model["description"].split(". ")[0].rstrip(".")
    return f"model {model['name']} ({model['model_path']}): {first_sentence}."


def _one_or_many(values: list[int] | None) -> int | list[int] | None:
    """One value on the command line stands for every axis."""
    return values[0] if values is not None and len(values) == 1 else values


if __name__ == "__main__":
    sys.exit(main())
