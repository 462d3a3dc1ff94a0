"""The bundle's models: the registry of models by name, model folders, and loading a model's network and settings.

A model is named either by a key of the bundle's ``metadata.json`` (``"model"``, the default, or one of its
``additional_models``) or by the path of a model folder written by ``spoco-monai train``
(:mod:`spoco_monai.training.model_folder`). The command line, :mod:`spoco_monai.visualize` and the benchmarks
load networks through this module only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from torch import nn

from spoco_monai.data.checks import noise_description
from spoco_monai.data.colour import COLOUR_SAMPLES, colour_advice, looks_like_colour_samples_last
from spoco_monai.data.volume_io import LazyVolume
from spoco_monai.engines.checkpoint import load_network_weights
from spoco_monai.inferers.settings import SegmentationSettings
from spoco_monai.training.model_folder import is_model_folder, read_model_folder

# the config entry holding the bundle's SegmentationSettings
SETTINGS_KEY = "segmentation"
# the bundle's configs every model's inference layers its own overlays on, relative to the bundle
INFERENCE_CONFIGS = ("configs/common.json", "configs/inference.json")
# the configs the default model is trained with, relative to the bundle
TRAINING_CONFIGS = ("configs/common.json", "configs/train.json")
# an input voxel size this many times larger or smaller than the model's, along some axis, is warned about
ELEMENT_SIZE_TOLERANCE = 1.5
# the side of the central block of an input that is judged for noise before segmenting
_NOISE_BLOCK = 128


def bundle_config(bundle: str | Path, configs: Sequence[str]) -> ConfigParser:
    """The bundle's ``configs`` (relative to the bundle, or absolute) merged in order, with ``bundle_root`` set.

    Raises:
        FileNotFoundError: if a config is missing.
    """
    files = [Path(bundle) / config for config in configs]
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"bundle config {file} not found.")
    parser = ConfigParser()
    parser.read_config([str(file) for file in files])
    parser["bundle_root"] = str(bundle)
    return parser


def voxel_size_warning(element_size: Sequence[float] | None, trained_size: Sequence[float] | None) -> str | None:
    """A warning (to follow "the input's") when a voxel size differs from the model's training voxel size by more than
    :data:`ELEMENT_SIZE_TOLERANCE` along some axis; None when they agree or either is unknown."""
    if element_size is None or trained_size is None or len(element_size) != len(trained_size):
        return None
    ratios = np.asarray(element_size, dtype=float) / np.asarray(trained_size, dtype=float)
    if np.all(ratios <= ELEMENT_SIZE_TOLERANCE) and np.all(ratios >= 1 / ELEMENT_SIZE_TOLERANCE):
        return None
    return (
        f"voxel size {tuple(element_size)} differs from the model's training voxel size {tuple(trained_size)} "
        "(its config's element_size): objects appear at another scale; resample the input or fine-tune the model on "
        "data of this voxel size."
    )


def load_bundle_network(
    bundle: str | Path,
    checkpoint: str | Path | None = None,
    configs: Sequence[str] = INFERENCE_CONFIGS,
    device: str | torch.device = "cpu",
    overrides: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, ConfigParser]:
    """Build ``network_def`` from a MONAI bundle and load its weights.

    Args:
        bundle: the bundle directory (``bundle_root`` in its configs).
        checkpoint: weights file (default ``<bundle>/models/model.pt``), in any layout
            :func:`~spoco_monai.engines.load_network_weights` reads.
        configs: config files relative to the bundle, merged in order.
        device: device to move the network to.
        overrides: config entries set before anything is built (``{"embedding_dim": 8}``, ``{"segmentation#overlap":
            0.5}``).

    Returns:
        the network in eval mode on ``device``, and the parsed config.

    Raises:
        FileNotFoundError: if a config or the checkpoint is missing.
        ValueError: if the config has no ``network_def`` or the checkpoint holds no state dict that fits.
    """
    bundle = Path(bundle)
    parser = bundle_config(bundle, configs)
    for key, value in (overrides or {}).items():
        parser[key] = value
    if "network_def" not in parser:
        raise ValueError(f"the bundle configs {[str(bundle / c) for c in configs]} define no 'network_def'.")
    network = parser.get_parsed_content("network_def")
    load_network_weights(network, Path(checkpoint) if checkpoint is not None else bundle / "models" / "model.pt")
    return network.to(device).eval(), parser


def bundle_settings(config: ConfigParser) -> SegmentationSettings:
    """The bundle's segmentation settings: its ``segmentation`` entry (see ``configs/common.json``).

    Raises:
        ValueError: the config has no such entry, it is not a :class:`~spoco_monai.inferers.SegmentationSettings`, or it
            names the affinity kernel's width by its former name ``delta_dist``.
    """
    if SETTINGS_KEY not in config:
        raise ValueError(
            f"the bundle config defines no '{SETTINGS_KEY}' (a spoco_monai.inferers.SegmentationSettings); "
            "pass --roi-size to segment with the default settings."
        )
    if isinstance(config[SETTINGS_KEY], dict) and "delta_dist" in config[SETTINGS_KEY]:
        raise ValueError(
            f"the bundle config's '{SETTINGS_KEY}' names 'delta_dist', now 'affinity_delta_dist' (the affinity kernel's "
            "width; 'delta_dist' is the loss's push margin): rename that key of its config."
        )
    settings = config.get_parsed_content(SETTINGS_KEY)
    if not isinstance(settings, SegmentationSettings):
        raise ValueError(
            f"the bundle config's '{SETTINGS_KEY}' is a {type(settings).__name__}, expected a "
            "spoco_monai.inferers.SegmentationSettings."
        )
    return settings


# the bundle the commands use unless told otherwise: the one beside the current folder, as in the README
DEFAULT_BUNDLE = "bundle"
DEFAULT_MODEL = "model"


def model_names(bundle: str | Path) -> list[str]:
    """The names of the models the bundle ships: ``"model"`` and the keys of ``additional_models``."""
    metadata_path = Path(bundle) / "configs" / "metadata.json"
    metadata = json.loads(metadata_path.read_text()) if metadata_path.is_file() else {}
    return [DEFAULT_MODEL, *sorted(metadata.get("additional_models", {}))]


def bundle_model(bundle: str | Path, name: str | Path = DEFAULT_MODEL) -> dict[str, Any]:
    """The configs, weights and description of a model: one the bundle ships, by name, or a model folder.

    ``"model"`` is the bundle's default model (:data:`INFERENCE_CONFIGS`, ``models/model.pt``, trained with
    :data:`TRAINING_CONFIGS`); other names are the keys of ``additional_models`` in its ``metadata.json``, each with
    its ``inference_config`` (a file or a list of files layered on :data:`INFERENCE_CONFIGS`), ``training_config``
    and ``model_path``. A path to a folder written by ``spoco-monai train`` (see
    :mod:`spoco_monai.training.model_folder`) gives that folder's config, weights and record.

    Returns:
        ``{"name", "configs", "model_path", "training_configs", "finetune_settings", "description", "data_source",
        "record"}``: configs and weights relative to the bundle (absolute for a model folder); ``finetune_settings``
        the config entries a fine-tuning of this model sets (its ``finetune_settings`` in ``metadata.json``);
        ``record`` is a model folder's ``model.json`` (None for a shipped model).

    Raises:
        FileNotFoundError: the bundle has no ``configs/metadata.json`` (needed for any model but the default).
        ValueError: no model of that name (the message lists the names there are), a file (weights are no model), or
            an incomplete model folder.
    """
    if Path(name).is_file():
        raise ValueError(
            f"{name} is a file: a model is named by a model the bundle ships ({', '.join(model_names(bundle))}) or by "
            f"the folder 'spoco-monai train' wrote; give a weights file with --checkpoint {name}."
        )
    if is_model_folder(name) or Path(name).is_dir():
        record = read_model_folder(name)
        return {
            "name": str(Path(name)),
            "configs": [record["config"]],
            "model_path": record["weights"],
            "training_configs": record.get("training_configs", list(TRAINING_CONFIGS)),
            "finetune_settings": record.get("finetune_settings", {}),
            "description": record.get("description", ""),
            "data_source": record.get("data_source", ""),
            "record": record,
        }
    name = str(name)
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
            f"the bundle {bundle} ships no model named {name!r} and no model folder is there; choose one of "
            f"{model_names(bundle)} or the folder 'spoco-monai train' wrote."
        )
    extra = entry["inference_config"]
    extra = [extra] if isinstance(extra, str) else list(extra)
    return {
        "name": name,
        "configs": [*INFERENCE_CONFIGS, *[c for c in extra if c not in INFERENCE_CONFIGS]],
        "model_path": entry["model_path"],
        "training_configs": list(entry.get("training_config", TRAINING_CONFIGS)),
        "finetune_settings": dict(entry.get("finetune_settings", {})),
        "description": entry.get("description", ""),
        "data_source": entry.get("data_source", ""),
        "record": None,
    }


def model_names_by_dims(bundle: str | Path) -> dict[int, list[str]]:
    """The names of the models the bundle ships, by the spatial dimensions (2 or 3) of the images they segment."""
    names: dict[int, list[str]] = {2: [], 3: []}
    for name in model_names(bundle):
        config = bundle_config(bundle, bundle_model(bundle, name)["configs"])
        if "spatial_dims" in config:
            names.setdefault(int(config.get_parsed_content("spatial_dims")), []).append(name)
    return names


def input_mismatch_warnings(volume: LazyVolume, config: ConfigParser, bundle: str | Path | None = None) -> list[str]:
    """Warnings for an input unlike the model's training data: dimensionality, channels or voxel size, or noise
    instead of a picture (judged on a central block of at most ``_NOISE_BLOCK`` values per axis).

    The voxel size is compared when the input file carries one (:attr:`~spoco_monai.data.LazyVolume.element_size`)
    and the config has the model's ``element_size``. An input that looks like a colour image, or like a volume whose
    slices would be read as channels, is told so.

    Args:
        volume: the input.
        config: the model's configs, merged.
        bundle: the bundle whose models of the input's dimensionality a warning names; None names none.
    """
    dims = int(config.get_parsed_content("spatial_dims")) if "spatial_dims" in config else None
    channels = int(config.get_parsed_content("in_channels")) if "in_channels" in config else None
    trained_size = config.get_parsed_content("element_size") if "element_size" in config else None
    shape = tuple(volume.shape)

    def choose(fitting_dims: int) -> str:
        names = model_names_by_dims(bundle).get(fitting_dims, []) if bundle is not None else []
        listed = f" ({', '.join(names)})" if names else ""
        return f"choose a {fitting_dims}D model with --model{listed}"

    colour_last = colour_advice(shape[-1], channels) if channels is not None else None
    if colour_last is not None and looks_like_colour_samples_last(shape, volume.channel_dim):
        return [f"the input has shape {shape}, colour samples last: {colour_last}."]
    if dims is not None and len(shape) not in (dims, dims + 1):
        # an input of n axes is an image of n spatial axes, or of n - 1 with channels first
        fitting = [d for d in (2, 3) if len(shape) in (d, d + 1)]
        advice = (
            f"{choose(fitting[0])}."
            if fitting
            else f"no model segments {len(shape)}-axis images; remove the axes of length 1 or choose one channel or "
            "time point first."
        )
        return [
            f"the input has shape {shape}, the model segments {dims}D images "
            f"({'(C, Y, X)' if dims == 2 else '(C, Z, Y, X)'}): {advice}"
        ]
    warnings = []
    if dims is not None and channels is not None:
        found = shape[0] if len(shape) == dims + 1 else 1
        advice = colour_advice(found, channels)
        if dims == 2 and volume.channel_dim is None and found > max(channels, COLOUR_SAMPLES[-1]):
            warnings.append(
                f"the input has shape {shape}, read as {found} channels of a 2D image: this looks like a 3D volume; "
                f"{choose(3)}."
            )
        elif advice is not None:
            warnings.append(f"the input has {found} channels: {advice}.")
        elif found != channels:
            warnings.append(f"the input has {found} channel(s), the model was trained on {channels}.")
    size_warning = voxel_size_warning(volume.element_size, trained_size)
    if size_warning is not None:
        warnings.append(f"the input's {size_warning}")
    # judged on a central block, so that a volume larger than memory is not read for it
    block = tuple(slice(max(0, (length - _NOISE_BLOCK) // 2), max(0, (length - _NOISE_BLOCK) // 2) + _NOISE_BLOCK)
                  for length in shape)
    noise = noise_description(np.asarray(volume[block]))
    if noise is not None:
        warnings.append(f"the input {noise}")
    return warnings
