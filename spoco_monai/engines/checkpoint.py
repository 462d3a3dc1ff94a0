"""Checkpoints: atomic saving, finding the checkpoint to resume from, loading network weights safely."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver
from torch import nn

from spoco_monai.engines.ema import unwrap_module


class AtomicDiskSaver(DiskSaver):
    """ignite ``DiskSaver`` that writes to a temporary file in the target folder and renames it (``os.replace``).

    A run killed while saving leaves the previous checkpoint intact, never a truncated file. MONAI's
    ``CheckpointSaver`` builds its savers with ``atomic=False`` (to keep group read permission, which ignite >= 0.5
    restores itself after the rename), so this class is swapped in by :class:`AtomicCheckpointSaver`.

    Args:
        dirname: folder of the checkpoints, created when missing.
        filename: fixed file name replacing ignite's generated one (``None`` keeps ignite's name).
    """

    def __init__(self, dirname: str | os.PathLike, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=True)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)

    def remove(self, filename: str) -> None:
        super().remove(self.filename or filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI ``CheckpointSaver`` whose every file (final, key metric, interval) is written atomically.

    Same arguments as ``monai.handlers.CheckpointSaver``.
    """

    def __init__(self, save_dir: str, save_dict: dict, **kwargs: Any) -> None:
        super().__init__(save_dir=save_dir, save_dict=save_dict, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler = AtomicDiskSaver(save_dir, getattr(checkpoint.save_handler, "filename", None))


_ITERATION_PATTERN = re.compile(r"_(?:iteration|final_iteration|epoch)=(\d+)\.pt$")


def latest_checkpoint(checkpoint_dir: str | os.PathLike, prefix: str = "checkpoint") -> str | None:
    """The checkpoint a killed run resumes from: the one with the highest iteration/epoch number.

    Matches the names ``CheckpointSaver`` writes, ``{prefix}_iteration=N.pt``, ``{prefix}_epoch=N.pt`` and
    ``{prefix}_final_iteration=N.pt``.

    Args:
        checkpoint_dir: folder of the checkpoints; may not exist yet.
        prefix: the saver's ``file_prefix``.

    Returns:
        The path as a string, or ``None`` when there is no checkpoint.
    """
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return None
    numbered = []
    for path in folder.glob(f"{prefix}_*.pt"):
        match = _ITERATION_PATTERN.search(path.name)
        if match:
            numbered.append((int(match.group(1)), path.stat().st_mtime, str(path)))
    return max(numbered)[2] if numbered else None


def load_network_weights(
    network: nn.Module, checkpoint_path: str | os.PathLike, key: str | None = None, strict: bool = True
) -> nn.Module:
    """Load weights into ``network`` from a checkpoint file (``torch.load(weights_only=True)``) and return it.

    Args:
        network: the module to fill (a ``DistributedDataParallel`` wrapper is unwrapped).
        checkpoint_path: a file holding a state dict, or a dict of state dicts (a training checkpoint).
        key: entry of the dict to load (e.g. ``"network"``); ``None`` takes the file as the state dict, or its
            ``"network"``/``"model"`` entry when it has one.
        strict: as in ``nn.Module.load_state_dict``.

    Returns:
        ``network``, with the loaded weights.

    Raises:
        FileNotFoundError: the file does not exist.
        KeyError: ``key`` is not in the checkpoint.
    """
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: '{path}'.")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if key is None:
        key = next((name for name in ("network", "model") if isinstance(checkpoint.get(name), Mapping)), None)
    if key is not None:
        if key not in checkpoint:
            raise KeyError(f"checkpoint '{path}' has no entry '{key}'; entries: {sorted(checkpoint)}.")
        checkpoint = checkpoint[key]
    unwrap_module(network).load_state_dict(checkpoint, strict=strict)
    return network

