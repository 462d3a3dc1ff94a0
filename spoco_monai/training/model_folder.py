"""A self-contained model folder: the weights, the inference config and a record of how the model was trained.

``spoco-monai train`` writes one; ``spoco-monai segment --model FOLDER`` and
:func:`spoco_monai.bundle.bundle_model` use it like a model the bundle ships. The folder holds::

    model.pt          the network's weights (a plain state dict)
    inference.json    the complete MONAI bundle config of the network and its segmentation settings
    model.json        the record: what it started from, the data and their annotated objects, whether the labels
                      were real sparse annotations or simulated, iterations, time, seed, versions
    training/         the training run (checkpoints, TensorBoard logs, the sparse annotation manifest)

``model.json`` is written last, so a folder holding it is complete; every file is replaced atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from spoco_monai.data.atomic import write_atomically

__all__ = [
    "MODEL_RECORD",
    "MODEL_WEIGHTS",
    "MODEL_CONFIG",
    "TRAINING_FOLDER",
    "is_model_folder",
    "read_model_folder",
    "write_model_folder",
]

MODEL_RECORD = "model.json"
MODEL_WEIGHTS = "model.pt"
MODEL_CONFIG = "inference.json"
TRAINING_FOLDER = "training"


def is_model_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a model record (``model.json``)."""
    return Path(path, MODEL_RECORD).is_file()


def read_model_folder(path: str | os.PathLike) -> dict[str, Any]:
    """The record of the model folder ``path``, with the absolute paths of its weights and config added.

    Returns:
        the ``model.json`` record plus ``"weights"`` and ``"config"`` (absolute paths).

    Raises:
        ValueError: ``path`` is not a complete model folder (the message names the missing file).
    """
    folder = Path(path).resolve()
    missing = [name for name in (MODEL_RECORD, MODEL_WEIGHTS, MODEL_CONFIG) if not (folder / name).is_file()]
    if missing:
        raise ValueError(
            f"{folder} is not a complete model folder: {', '.join(missing)} missing (a folder written by "
            "'spoco-monai train' holds model.json, model.pt and inference.json)."
        )
    try:
        record = json.loads((folder / MODEL_RECORD).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{folder / MODEL_RECORD} is not valid JSON: {error}") from error
    if not isinstance(record, dict):
        raise ValueError(f"{folder / MODEL_RECORD} holds a {type(record).__name__}, expected a JSON object.")
    return {**record, "weights": str(folder / MODEL_WEIGHTS), "config": str(folder / MODEL_CONFIG)}


def write_model_folder(
    folder: str | os.PathLike,
    state_dict: Mapping[str, torch.Tensor],
    inference_config: Mapping[str, Any],
    record: Mapping[str, Any],
) -> Path:
    """Write (or replace) the weights, the inference config and, last, the record of a model folder.

    Args:
        folder: the model folder, created when missing.
        state_dict: the network's weights.
        inference_config: the raw (unparsed) MONAI bundle config defining ``network_def`` and ``segmentation``.
        record: JSON-serialisable description of the model (see the module docstring).

    Returns:
        the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with write_atomically(folder / MODEL_WEIGHTS) as temporary:
        torch.save(dict(state_dict), temporary)
    with write_atomically(folder / MODEL_CONFIG) as temporary:
        temporary.write_text(json.dumps(inference_config, indent=1))
    with write_atomically(folder / MODEL_RECORD) as temporary:
        temporary.write_text(json.dumps(record, indent=1))
    return folder
