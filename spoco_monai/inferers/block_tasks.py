"""The per-block tasks of a whole-volume run that read the input: statistics, segmentation, input digests.

Each is a plain function of one block, run by a :class:`~.task_runner.TaskRunner` in this process or on a dask
worker alike; what it reads comes through a reader (a :class:`~.block_reading.BlockReader` in this process, a
:class:`VolumeReader` on workers) and what it writes goes to the work directory's :class:`~.block_store.BlockStore`.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..data.volume_io import open_volume
from .block_clustering import cluster_block, core_labels_first
from .block_grid import Block
from .block_prediction import BlockPredictor
from .block_store import BlockRecord, BlockStore
from .freed_memory import release_freed_memory
from .input_digest import input_digest
from .window_blending import BlendingWorkspace

# a thread's blending buffers, reused from block to block (tasks of one worker may run in several threads)
_workspaces = threading.local()


class VolumeReader:
    """Reads regions of the input in whichever process calls it: opens a volume path there, or slices an array.

    Pickled, it carries the path (or the array), not an open file, so a dask worker opens the file once, the
    first time it reads.

    Args:
        image: a volume path (see :mod:`spoco_monai.data.volume_io`), or an array or tensor.
        has_channels: whether the image has a leading channel axis.
    """

    def __init__(self, image: str | os.PathLike | Any, has_channels: bool) -> None:
        # absolute, so that a worker started in another folder finds the file
        self.image = os.path.abspath(os.fspath(image)) if isinstance(image, (str, os.PathLike)) else image
        self.has_channels = has_channels
        self._volume: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_volume": None}

    def __call__(self, block: Block) -> np.ndarray | torch.Tensor:
        """The ``(C, *extent)`` values of ``block``'s extent."""
        return self.region(block.extent)

    def region(self, slices: tuple[slice, ...]) -> np.ndarray | torch.Tensor:
        """The ``(C, *region)`` values of a region (slices of the spatial axes)."""
        if self._volume is None:
            self._volume = open_volume(self.image) if isinstance(self.image, str) else self.image
        return self._volume[(slice(None), *slices)] if self.has_channels else self._volume[slices][None]


def core_sums(block: Block, read: VolumeReader) -> tuple[float, float, bool]:
    """Sum and sum of squares (float64) of the values of a block's core, and whether all are finite."""
    values = read.region(block.core)
    values = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    values = values.astype(np.float64).ravel()
    return float(values.sum()), float(values @ values), bool(np.isfinite(values).all())


def segment_block(
    block: Block,
    read: Callable[[Block], np.ndarray | torch.Tensor],
    predictor: BlockPredictor,
    store: BlockStore,
) -> tuple[BlockRecord, dict[str, float]]:
    """Read a block's extent, predict and cluster it, and store its labels, core labels first.

    Args:
        block: the block.
        read: gives the ``(C, *extent)`` image values of a block's extent.
        predictor: the network, blending and their settings.
        store: where the labels go (with the block's record).

    Returns:
        the block's record, and the seconds spent in the stages ``"network"`` (reading, network, blending),
        ``"affinities"`` and ``"clustering"``.
    """
    times = {"network": 0.0, "affinities": 0.0, "clustering": 0.0}
    start = time.perf_counter()
    if not hasattr(_workspaces, "workspace"):
        _workspaces.workspace = BlendingWorkspace()
    predictor = dataclasses.replace(predictor, workspace=_workspaces.workspace)
    with torch.no_grad():
        region = read(block)
        digest = input_digest(region)
        prediction = predictor(region, block, lambda windows: None, times)
    del region
    middle = time.perf_counter()
    times["network"] = middle - start - times["affinities"]
    labels = cluster_block(prediction, predictor.settings)
    del prediction
    release_freed_memory()
    labels, num_core = core_labels_first(labels, block.core_in_extent)
    record = BlockRecord(num_core, int(labels.max()), digest)
    store.save(block.index, labels, record)
    times["clustering"] = time.perf_counter() - middle
    return record, times


def block_input_digest(block: Block, read: Callable[[Block], np.ndarray | torch.Tensor]) -> tuple[int, str]:
    """``(index, digest)`` of the image values of a block's extent as they are now."""
    return block.index, input_digest(read(block))
