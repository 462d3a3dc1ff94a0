"""Command line: ``spoco-monai segment INPUT OUTPUT --bundle bundle/ [options]``.

Under ``torchrun`` (``torchrun --nproc_per_node=N -m spoco_monai.cli segment ...``) the processes join the
process group torchrun describes (NCCL with ``--device cuda``, one GPU per process; gloo on CPU) and share
the blocks; rank 0 writes the output and prints its path.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from torch import nn

from .data.volume_io import open_volume, parse_volume_path, volume_mean_std
from .engines.checkpoint import load_checked_state_dict, read_checkpoint
from .inferers.distributed import init_from_environment
from .inferers.segment_volume import CLUSTERINGS, SEGMENT_MODES, WORK_DIRECTORY_SUFFIX, segment_volume
from .inferers.work_lock import WorkDirectoryLock, WorkDirectoryLockedError

# where a bundle's inference config may define the sliding-window size, tried in this order
ROI_SIZE_KEYS = ("roi_size", "inferer#roi_size", "patch_size")
# keys under which a training checkpoint may nest the network's state dict
STATE_DICT_KEYS = ("network", "model", "state_dict", "net")


def load_bundle_network(
    bundle: str | Path,
    checkpoint: str | Path | None = None,
    configs: Sequence[str] = ("configs/inference.json",),
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, ConfigParser]:
    """Build ``network_def`` from a MONAI bundle and load its weights.

    Args:
        bundle: the bundle directory (``bundle_root`` in its configs).
        checkpoint: weights file (default ``<bundle>/models/model.pt``): a state dict, or a checkpoint
            holding one under ``network``, ``model``, ``state_dict`` or ``net``.
        configs: config files relative to the bundle, merged in order.
        device: device to move the network to.

    Returns:
        the network in eval mode on ``device``, and the parsed config.

    Raises:
        FileNotFoundError: if a config or the checkpoint is missing.
        ValueError: if the config has no ``network_def`` or the checkpoint holds no state dict.
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
    checkpoint = Path(checkpoint) if checkpoint is not None else bundle / "models" / "model.pt"
    state = read_checkpoint(checkpoint)
    if not isinstance(state, dict):
        raise ValueError(f"{checkpoint} holds a {type(state).__name__}, expected a state dict.")
    if isinstance(state, dict) and not all(isinstance(value, torch.Tensor) for value in state.values()):
        nested = next((state[key] for key in STATE_DICT_KEYS if key in state), None)
        if nested is None:
            raise ValueError(
                f"{checkpoint} holds no state dict: expected tensors or one of the keys {STATE_DICT_KEYS}, "
                f"got keys {sorted(state)}."
            )
        state = nested
    load_checked_state_dict(network, state, checkpoint)
    return network.to(device).eval(), parser


DEFAULT_MODEL = "model"


def bundle_model(bundle: str | Path, name: str = DEFAULT_MODEL) -> dict[str, Any]:
    """The configs, weights and description of a model the bundle ships, by name, from its ``metadata.json``.

    ``"model"`` is the bundle's default model (``configs/inference.json``, ``models/model.pt``); other names are
    the keys of ``additional_models``, each with its ``inference_config`` (a file or a list of files layered on
    ``configs/inference.json``) and ``model_path``.

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
        "configs": ["configs/inference.json", *[c for c in extra if c != "configs/inference.json"]],
        "model_path": entry["model_path"],
        "description": entry.get("description", ""),
        "data_source": entry.get("data_source", ""),
    }


def input_mismatch_warnings(volume_shape: Sequence[int], config: ConfigParser) -> list[str]:
    """Warnings for an input unlike the model's training data: other dimensionality or channel count."""
    dims = int(config.get_parsed_content("spatial_dims")) if "spatial_dims" in config else None
    channels = int(config.get_parsed_content("in_channels")) if "in_channels" in config else None
    warnings = []
    if dims is not None and len(volume_shape) not in (dims, dims + 1):
        warnings.append(
            f"the input has shape {tuple(volume_shape)}, the model segments {dims}D images "
            f"({'(C, Y, X)' if dims == 2 else '(C, Z, Y, X)'}): choose a {len(volume_shape)}D model with --model."
        )
    elif dims is not None and channels is not None:
        found = volume_shape[0] if len(volume_shape) == dims + 1 else 1
        if found != channels:
            warnings.append(f"the input has {found} channel(s), the model was trained on {channels}.")
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
            "An interrupted run resumes from OUTPUT.spoco-work when started again with the same settings."
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
    segment.add_argument(
        "--roi-size",
        nargs="+",
        type=int,
        help=f"window size per axis (default: the bundle's {' / '.join(ROI_SIZE_KEYS)})",
    )
    segment.add_argument("--overlap", type=float, help="window overlap in [0, 1) (default: the bundle's)")
    segment.add_argument("--block-shape", nargs="+", type=int, help="block core size per axis (default ~128^3)")
    segment.add_argument("--halo", nargs="+", type=int, help="minimum block halo per axis in voxels")
    segment.add_argument("--mode", choices=SEGMENT_MODES, default="affinities", help="default: affinities")
    segment.add_argument("--clustering", choices=CLUSTERINGS, default="mws", help="labels mode only (default mws)")
    segment.add_argument("--min-size", type=int, help="minimum object size (default: the bundle's clustering_kwargs)")
    segment.add_argument(
        "--foreground",
        choices=("none", "network", "intensity"),
        help="where objects may be: everywhere, the network's foreground channel, or above the Otsu threshold "
        "(default: the bundle's foreground)",
    )
    segment.add_argument(
        "--delta-dist",
        type=float,
        help="delta_d of the embedding affinities (default: the bundle's affinity_delta_dist, else 2.0)",
    )
    segment.add_argument(
        "--normalize",
        choices=("zscore", "none"),
        default="zscore",
        help="intensity normalisation before the network: zscore (default) uses the whole volume's mean and std, "
        "as MONAI's NormalizeIntensityd in the bundle's preprocessing; none feeds the values as stored",
    )
    segment.add_argument("--sw-batch-size", type=int, default=1, help="windows per forward pass (default 1)")
    segment.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    segment.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUTPUT once the new one is complete (for file.h5:dataset or volume.zarr:array, that dataset only)",
    )
    segment.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spoco-monai`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    device, joined_group = init_from_environment(args.device)
    try:
        return _segment(args, device)
    finally:
        if joined_group:
            torch.distributed.destroy_process_group()


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
        roi_size = args.roi_size or _bundle_roi_size(config)
        statistics = input_statistics(args.input)
        print(
            f"spoco-monai segment: model {model['name']} ({checkpoint}): {model['description']}"
            + (f" Trained on: {model['data_source']}." if model["data_source"] else ""),
            file=sys.stderr,
        )
        with open_volume(args.input) as volume:
            for warning in input_mismatch_warnings(volume.shape, config):
                print(f"spoco-monai segment: warning: {warning}", file=sys.stderr)
        normalize = statistics if args.normalize == "zscore" else None
        clustering_kwargs = dict(_bundle_value(config, "clustering_kwargs", {}))
        if args.min_size is not None:
            clustering_kwargs["min_size"] = args.min_size
        foreground = _bundle_value(config, "foreground", None) if args.foreground is None else args.foreground
        result = segment_volume(
            args.input,
            network,
            roi_size,
            overlap=_bundle_value(config, "sliding_window_overlap", 0.5) if args.overlap is None else args.overlap,
            block_shape=_one_or_many(args.block_shape),
            mode=args.mode,
            output=args.output,
            device=device,
            halo=_one_or_many(args.halo),
            sw_batch_size=args.sw_batch_size,
            delta_dist=_bundle_value(config, "affinity_delta_dist", 2.0) if args.delta_dist is None else args.delta_dist,
            offsets=_bundle_value(config, "mws_offsets", None),
            normalize=normalize,
            clustering=args.clustering,
            clustering_kwargs=clustering_kwargs,
            foreground=None if foreground == "none" else foreground,
            whole_image_max_voxels=_bundle_value(config, "whole_image_max_voxels", None),
            overwrite=args.overwrite,
            progress=not args.no_progress,
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


def input_statistics(path: str) -> tuple[float, float]:
    """Mean and standard deviation of a volume, reading it whole once so that bad input stops the run before work.

    Raises:
        FileNotFoundError: the file or dataset does not exist.
        ValueError: the file cannot be read to the end (truncated or corrupt), or holds NaN or infinite values.
    """
    try:
        with open_volume(path) as volume:
            statistics = volume_mean_std(volume)
    except FileNotFoundError:
        raise
    except Exception as error:  # zlib, h5py, tifffile and nibabel raise their own types for a damaged file
        if isinstance(error, ValueError) and str(parse_volume_path(path).file) in str(error):
            raise  # already names the file
        raise ValueError(
            f"cannot read {path} ({type(error).__name__}: {error}); the file may be truncated or corrupt."
        ) from error
    if not all(math.isfinite(value) for value in statistics):
        raise ValueError(f"{path} holds NaN or infinite values; expected finite intensities (fix or mask them first).")
    return statistics


def _bundle_roi_size(config: ConfigParser) -> list[int]:
    for key in ROI_SIZE_KEYS:
        if key in config:
            return [int(v) for v in config.get_parsed_content(key)]
    raise ValueError(f"pass --roi-size: the bundle config defines none of {ROI_SIZE_KEYS}.")


def _bundle_value(config: ConfigParser, key: str, default: Any) -> Any:
    return config.get_parsed_content(key) if key in config else default


def _one_or_many(values: list[int] | None) -> int | list[int] | None:
    return values[0] if values is not None and len(values) == 1 else values


if __name__ == "__main__":
    sys.exit(main())
