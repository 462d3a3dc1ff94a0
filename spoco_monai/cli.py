"""Command line: ``spoco-monai segment INPUT OUTPUT --bundle bundle/ [options]``.

Under ``torchrun`` (``torchrun --nproc_per_node=N -m spoco_monai.cli segment ...``) the processes join the
process group torchrun describes (NCCL with ``--device cuda``, one GPU per process; gloo on CPU) and share
the blocks; rank 0 writes the output and prints its path.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from torch import nn

from .data.volume_io import LazyVolume, open_volume, parse_volume_path
from .engines.checkpoint import load_network_weights
from .inferers.distributed import init_from_environment
from .inferers.segment_volume import WORK_DIRECTORY_SUFFIX, segment_volume
from .inferers.settings import BLENDS, CLUSTERING_OPTIONS, CLUSTERINGS, SegmentationSettings
from .inferers.work_lock import WorkDirectoryLock, WorkDirectoryLockedError

# the config entry holding the bundle's SegmentationSettings
SETTINGS_KEY = "segmentation"
# the bundle's configs every model's inference layers its own overlays on, relative to the bundle
INFERENCE_CONFIGS = ("configs/common.json", "configs/inference.json")
# an input voxel size this many times larger or smaller than the model's, along some axis, is warned about
ELEMENT_SIZE_TOLERANCE = 1.5


def load_bundle_network(
    bundle: str | Path,
    checkpoint: str | Path | None = None,
    configs: Sequence[str] = INFERENCE_CONFIGS,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, ConfigParser]:
    """Build ``network_def`` from a MONAI bundle and load its weights.

    Args:
        bundle: the bundle directory (``bundle_root`` in its configs).
        checkpoint: weights file (default ``<bundle>/models/model.pt``), in any layout
            :func:`~spoco_monai.engines.load_network_weights` reads.
        configs: config files relative to the bundle, merged in order.
        device: device to move the network to.

    Returns:
        the network in eval mode on ``device``, and the parsed config.

    Raises:
        FileNotFoundError: if a config or the checkpoint is missing.
        ValueError: if the config has no ``network_def`` or the checkpoint holds no state dict that fits.
    """
    bundle = Path(bundle)
    files = [bundle / config for config in configs]
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"bundle config {file} not found.")
    parser = ConfigParser()
    parser.read_config([str(file) for file in files])
    parser["bundle_root"] = str(bundle)
    if "network_def" not in parser:
        raise ValueError(f"the bundle configs {[str(f) for f in files]} define no 'network_def'.")
    network = parser.get_parsed_content("network_def")
    load_network_weights(network, Path(checkpoint) if checkpoint is not None else bundle / "models" / "model.pt")
    return network.to(device).eval(), parser


def bundle_settings(config: ConfigParser) -> SegmentationSettings:
    """The bundle's segmentation settings: its ``segmentation`` entry (see ``configs/common.json``).

    Raises:
        ValueError: the config has no such entry, or it is not a :class:`~spoco_monai.inferers.SegmentationSettings`.
    """
    if SETTINGS_KEY not in config:
        raise ValueError(
            f"the bundle config defines no '{SETTINGS_KEY}' (a spoco_monai.inferers.SegmentationSettings); "
            "pass --roi-size to segment with the default settings."
        )
    settings = config.get_parsed_content(SETTINGS_KEY)
    if not isinstance(settings, SegmentationSettings):
        raise ValueError(
            f"the bundle config's '{SETTINGS_KEY}' is a {type(settings).__name__}, expected a "
            "spoco_monai.inferers.SegmentationSettings."
        )
    return settings


DEFAULT_MODEL = "model"


def bundle_model(bundle: str | Path, name: str = DEFAULT_MODEL) -> dict[str, Any]:
    """The configs, weights and description of a model the bundle ships, by name, from its ``metadata.json``.

    ``"model"`` is the bundle's default model (:data:`INFERENCE_CONFIGS`, ``models/model.pt``); other names are
    the keys of ``additional_models``, each with its ``inference_config`` (a file or a list of files layered on
    :data:`INFERENCE_CONFIGS`) and ``model_path``.

    Returns:
        ``{"name", "configs" (paths relative to the bundle), "model_path", "description", "data_source"}``.

    Raises:
        FileNotFoundError: the bundle has no ``configs/metadata.json`` (needed for any model but the default).
        ValueError: no model of that name; the message lists the names there are.
    """
    metadata_path = Path(bundle) / "configs" / "metadata.json"
    if not metadata_path.is_file() and name != DEFAULT_MODEL:
        raise FileNotFoundError(f"{metadata_path} not found: --model {name} needs the bundle's metadata.json.")
    metadata = json.loads(metadata_path.read_text()) if metadata_path.is_file() else {}
    models = metadata.get("additional_models", {})
    if name == DEFAULT_MODEL:
        entry = {**metadata, "inference_config": [], "model_path": "models/model.pt"}
    elif name in models:
        entry = models[name]
    else:
        raise ValueError(
            f"the bundle {bundle} ships no model named {name!r}; choose one of {[DEFAULT_MODEL, *sorted(models)]}."
        )
    extra = entry["inference_config"]
    extra = [extra] if isinstance(extra, str) else list(extra)
    return {
        "name": name,
        "configs": [*INFERENCE_CONFIGS, *[c for c in extra if c not in INFERENCE_CONFIGS]],
        "model_path": entry["model_path"],
        "description": entry.get("description", ""),
        "data_source": entry.get("data_source", ""),
    }


def input_mismatch_warnings(volume: LazyVolume, config: ConfigParser) -> list[str]:
    """Warnings for an input unlike the model's training data: dimensionality, channels or voxel size.

    The voxel size is compared when the input file carries one (:attr:`~spoco_monai.data.LazyVolume.element_size`)
    and the config has the model's ``element_size``.
    """
    dims = int(config.get_parsed_content("spatial_dims")) if "spatial_dims" in config else None
    channels = int(config.get_parsed_content("in_channels")) if "in_channels" in config else None
    trained_size = config.get_parsed_content("element_size") if "element_size" in config else None
    shape = tuple(volume.shape)
    if dims is not None and len(shape) not in (dims, dims + 1):
        return [
            f"the input has shape {shape}, the model segments {dims}D images "
            f"({'(C, Y, X)' if dims == 2 else '(C, Z, Y, X)'}): choose a {len(shape)}D model with --model."
        ]
    warnings = []
    if dims is not None and channels is not None:
        found = shape[0] if len(shape) == dims + 1 else 1
        if found != channels:
            warnings.append(f"the input has {found} channel(s), the model was trained on {channels}.")
    if trained_size is not None and volume.element_size is not None and len(trained_size) == len(volume.element_size):
        ratios = np.asarray(volume.element_size, dtype=float) / np.asarray(trained_size, dtype=float)
        if np.any(ratios > ELEMENT_SIZE_TOLERANCE) or np.any(ratios < 1 / ELEMENT_SIZE_TOLERANCE):
            warnings.append(
                f"the input's voxel size {tuple(volume.element_size)} differs from the model's training voxel size "
                f"{tuple(trained_size)} (its config's element_size): objects appear at another scale; resample the "
                "input or fine-tune the model on data of this voxel size."
            )
    return warnings


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
    segment.add_argument("--bundle", required=True, help="MONAI bundle directory")
    segment.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="a model the bundle ships, by name (its metadata.json: 'model' or a key of additional_models, e.g. "
        "dsb2018_nuclei_2d); sets the configs and weights, with the model's settings (default: model)",
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
    segment.add_argument("--delta-dist", type=float, help=f"delta_d of the embedding affinities {bundle_default}")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spoco-monai`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    device, joined_group = init_from_environment(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        return _segment(args, device)
    finally:
        if joined_group:
            torch.distributed.destroy_process_group()


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
        "delta_dist": args.delta_dist,
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
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()) or (
            torch.distributed.get_rank() == 0
        ):
            # before reading the whole input: a second run on this output stops at once
            lock = WorkDirectoryLock(f"{parse_volume_path(args.output).file}{WORK_DIRECTORY_SUFFIX}")
        model = bundle_model(args.bundle, args.model)
        checkpoint = args.checkpoint or Path(args.bundle) / model["model_path"]
        network, config = load_bundle_network(args.bundle, checkpoint, args.config or model["configs"], device)
        settings = command_line_settings(args, config, device)
        with open_volume(args.input) as volume:
            warnings = input_mismatch_warnings(volume, config)
        print(
            f"spoco-monai segment: model {model['name']} ({checkpoint}): {model['description']}"
            + (f" Trained on: {model['data_source']}." if model["data_source"] else ""),
            file=sys.stderr,
        )
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
            args.input, network, settings, output=args.output, overwrite=args.overwrite, progress=not args.no_progress
        )
    except (ValueError, TypeError, FileExistsError, FileNotFoundError, WorkDirectoryLockedError) as error:
        print(f"spoco-monai segment: error: {error}", file=sys.stderr)
        return 1
    finally:
        if lock is not None:
            lock.release()
    if result is not None:
        print(result)
    return 0


def _one_or_many(values: list[int] | None) -> int | list[int] | None:
    """One value on the command line stands for every axis."""
    return values[0] if values is not None and len(values) == 1 else values


if __name__ == "__main__":
    sys.exit(main())
