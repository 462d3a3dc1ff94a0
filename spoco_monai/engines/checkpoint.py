"""Checkpoints: atomic saving, finding the checkpoint to resume from, loading network weights safely."""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
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
    """MONAI ``CheckpointSaver`` whose files are written atomically and whose records survive a resumed run.

    Same arguments as ``monai.handlers.CheckpointSaver``, with these differences, which make a killed and resumed
    training continue as if never stopped:

    - Interval checkpoints (``epoch_level=False``) that fall on the last iteration of an epoch are written at
      ``EPOCH_COMPLETED``, after the handlers attached before this one (validation, learning-rate step), so a
      checkpoint never predates the validation of its own epoch.
    - Nothing is saved when the run raises (MONAI saves a "final" checkpoint then): a checkpoint taken in the
      middle of a failed iteration, e.g. after a NaN loss, is not a state to resume from.
    - When a resumed engine starts (its state restored before ``run``), the interval and final checkpoints already in
      ``save_dir`` up to the current iteration (epoch) become this saver's own, so the oldest beyond ``n_saved``
      keep being deleted; later ones, left by the interrupted run (possibly truncated), are deleted.
    - :meth:`state_dict` / :meth:`load_state_dict` hold the key-metric record: the best score and its file, and the
      attached engine's ``best_metric`` / ``best_metric_epoch``. Put a key-metric saver (e.g. the validation's
      ``model.pt`` saver) in the training checkpoint, so that after a resume the best model is only replaced by a
      better one.
    """

    def __init__(self, save_dir: str, save_dict: dict, **kwargs: Any) -> None:
        super().__init__(save_dir=save_dir, save_dict=save_dict, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler = AtomicDiskSaver(save_dir, getattr(checkpoint.save_handler, "filename", None))
        self._engine: Engine | None = None

    def attach(self, engine: Engine) -> None:
        self._engine = engine
        if self._name is None:
            self.logger = engine.logger
        engine.add_event_handler(Events.STARTED, self._adopt_saved_files)
        if self._final_checkpoint is not None:
            engine.add_event_handler(Events.COMPLETED, self.completed)
        if self._key_metric_checkpoint is not None:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.metrics_completed)
        if self._interval_checkpoint is None:
            return
        if self.epoch_level:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.interval_completed)
            return
        interval = self.save_interval

        def within_epoch(engine: Engine, iteration: int) -> bool:
            return iteration % interval == 0 and iteration % engine.state.epoch_length != 0

        def at_epoch_end(engine: Engine, _: int) -> bool:
            return engine.state.iteration % interval == 0

        engine.add_event_handler(Events.ITERATION_COMPLETED(event_filter=within_epoch), self.interval_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED(event_filter=at_epoch_end), self.interval_completed)

    def _adopt_saved_files(self, engine: Engine) -> None:
        step = engine.state.epoch if self.epoch_level else engine.state.iteration
        if step == 0:
            return  # a fresh run leaves files of earlier runs alone
        for checkpoint in (self._interval_checkpoint, self._final_checkpoint):
            if checkpoint is None or getattr(checkpoint.save_handler, "filename", None) is not None:
                continue
            prefix = f"{checkpoint.filename_prefix}_" if checkpoint.filename_prefix else ""
            pattern = re.compile(rf"^{re.escape(prefix)}[^=]*_{re.escape(checkpoint.score_name)}=(\d+)\.pt$")
            found = sorted(
                (int(match.group(1)), path.name)
                for path in Path(self.save_dir).glob("*.pt")
                if (match := pattern.match(path.name))
            )
            for number, name in found:
                if number > step:
                    Path(self.save_dir, name).unlink()
            kept = [Checkpoint.Item(n, name) for n, name in found if n <= step]
            limit = checkpoint.n_saved if checkpoint is self._interval_checkpoint else 1
            while limit is not None and len(kept) > limit:
                Path(self.save_dir, kept.pop(0).filename).unlink()
            checkpoint._saved = kept

    def state_dict(self) -> dict[str, Any]:
        """The key-metric record: ``{"saved": [(score, file)], "best_metric", "best_metric_epoch"}`` (empty without)."""
        if self._key_metric_checkpoint is None:
            return {}
        state: dict[str, Any] = {"saved": [(float(p), f) for p, f in self._key_metric_checkpoint._saved]}
        engine_state = getattr(self._engine, "state", None)
        if hasattr(engine_state, "best_metric"):
            state["best_metric"] = float(engine_state.best_metric)
            state["best_metric_epoch"] = int(engine_state.best_metric_epoch)
        return state

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore a record from :meth:`state_dict` (the engine's best metric once this saver is attached)."""
        if self._key_metric_checkpoint is None or not state_dict:
            return
        self._key_metric_checkpoint._saved = [Checkpoint.Item(p, f) for p, f in state_dict["saved"]]
        engine_state = getattr(self._engine, "state", None)
        if engine_state is not None and "best_metric" in state_dict:
            engine_state.best_metric = state_dict["best_metric"]
            engine_state.best_metric_epoch = state_dict["best_metric_epoch"]


_ITERATION_PATTERN = re.compile(r"_(?:iteration|final_iteration|epoch)=(\d+)\.pt$")


def latest_checkpoint(checkpoint_dir: str | os.PathLike, prefix: str = "checkpoint") -> str | None:
    """The checkpoint a killed run resumes from: the readable one with the highest iteration/epoch number.

    Matches the names ``CheckpointSaver`` writes, ``{prefix}_iteration=N.pt``, ``{prefix}_epoch=N.pt`` and
    ``{prefix}_final_iteration=N.pt``. A file that does not load (truncated, e.g. by a full disk) is skipped with
    a warning, so the run falls back to the previous checkpoint.

    Args:
        checkpoint_dir: folder of the checkpoints; may not exist yet.
        prefix: the saver's ``file_prefix``.

    Returns:
        The path as a string, or ``None`` when there is no readable checkpoint.
    """
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return None
    numbered = []
    for path in folder.glob(f"{prefix}_*.pt"):
        match = _ITERATION_PATTERN.search(path.name)
        if match:
            numbered.append((int(match.group(1)), path.stat().st_mtime, str(path)))
    for _, _, path in sorted(numbered, reverse=True):
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for a damaged file; any of them means "skip"
            warnings.warn(f"checkpoint {path} cannot be read ({error}); resuming from the previous one.", stacklevel=2)
            continue
        return path
    return None


def read_checkpoint(checkpoint_path: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True)`` on CPU, with one clear error for a file that is not a checkpoint.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a PyTorch checkpoint (a text file, a truncated file, ...), or holds pickled
            objects other than tensors and plain containers, which are never loaded (they could run code).
    """
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: '{path}'.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Unsupported global" in str(error):  # a class or function to import: code a pickle would run
            raise ValueError(
                f"checkpoint '{path}' holds pickled objects other than tensors and plain containers; they are not "
                "loaded because unpickling them could run code (weights_only=True)."
            ) from error
        raise ValueError(
            f"'{path}' is not a PyTorch checkpoint (expected a file written by torch.save): {error}"
        ) from error
    except Exception as error:  # torch raises several types (RuntimeError, EOFError, IndexError) for such files
        raise ValueError(
            f"'{path}' is not a PyTorch checkpoint, or is truncated (expected a file written by torch.save): "
            f"{type(error).__name__}: {error}"
        ) from error


def load_checked_state_dict(
    network: nn.Module, state: Mapping, checkpoint_path: str | os.PathLike, strict: bool = True
) -> None:
    """``network.load_state_dict(state)`` whose error names the checkpoint and what does not fit.

    Raises:
        ValueError: the state dict is for another architecture; the message names the checkpoint, the first
            mismatching entries and, when the convolutions differ in rank, both dimensionalities (2D vs 3D).
    """
    module = unwrap_module(network)
    try:
        module.load_state_dict(state, strict=strict)
    except RuntimeError as error:
        expected = module.state_dict()
        shapes = [
            (name, tuple(value.shape), tuple(expected[name].shape))
            for name, value in state.items()
            if isinstance(value, torch.Tensor) and name in expected and value.shape != expected[name].shape
        ]
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        details = []
        ranks = {(len(found) - 2, len(wanted) - 2) for name, found, wanted in shapes if name.endswith("weight")}
        ranks = {pair for pair in ranks if pair[0] != pair[1] and min(pair) >= 1}
        if ranks:
            found, wanted = sorted(ranks)[0]
            details.append(f"the checkpoint is for a {found}D network, this run builds a {wanted}D one")
        if shapes:
            name, found, wanted = shapes[0]
            details.append(f"{len(shapes)} shape mismatch(es), e.g. '{name}': checkpoint {found}, network {wanted}")
        if missing and strict:
            details.append(f"{len(missing)} entries missing, e.g. '{missing[0]}'")
        if unexpected and strict:
            details.append(f"{len(unexpected)} unexpected entries, e.g. '{unexpected[0]}'")
        raise ValueError(
            f"checkpoint '{checkpoint_path}' does not fit the network ({type(module).__name__}): "
            f"{'; '.join(details) or error}."
        ) from error


# entries under which a checkpoint nests the network's state dict: this package's training checkpoints
# ("network") and MONAI's CheckpointSaver / CheckpointLoader convention ("model")
STATE_DICT_KEYS = ("network", "model")


def load_network_weights(
    network: nn.Module, checkpoint_path: str | os.PathLike, key: str | None = None, strict: bool = True
) -> nn.Module:
    """Load weights into ``network`` from a checkpoint file (``torch.load(weights_only=True)``) and return it.

    The one loader of network weights: bundle configs, the command line and Python use it for every checkpoint
    layout written today, a plain state dict (``model.pt``), ``{"network": state dict, ...}`` (training
    checkpoints) and ``{"model": state dict, ...}`` (MONAI's ``CheckpointSaver``).

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
        ValueError: the file is not a checkpoint, holds no state dict, or its weights do not fit ``network``
            (another architecture or dimensionality, named in the message).
    """
    path = Path(checkpoint_path)
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"checkpoint '{path}' holds a {type(checkpoint).__name__}, expected a dict of tensors.")
    if key is None:
        key = next((name for name in STATE_DICT_KEYS if isinstance(checkpoint.get(name), Mapping)), None)
    if key is not None:
        if key not in checkpoint:
            raise KeyError(f"checkpoint '{path}' has no entry '{key}'; entries: {sorted(checkpoint)}.")
        checkpoint = checkpoint[key]
    if not all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
        raise ValueError(
            f"checkpoint '{path}' holds no state dict: expected tensors or one of the entries {STATE_DICT_KEYS}, "
            f"got entries {sorted(checkpoint)}."
        )
    load_checked_state_dict(network, checkpoint, path, strict=strict)
    return network

