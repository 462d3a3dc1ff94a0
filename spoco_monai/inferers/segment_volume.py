"""Whole-volume instance segmentation, block by block, with stitching and resumable on-disk bookkeeping.

The parts, one job each: :mod:`~.block_grid` plans the blocks, :mod:`~.block_tasks` reads, predicts
(:mod:`~.block_prediction`) and clusters (:mod:`~.block_clustering`) a block, :mod:`~.stitching` matches a block
with its neighbours and joins all matches into global ids, and :mod:`~.labels_writer` relabels and writes the
output region by region; :mod:`~.block_store` keeps finished blocks, :mod:`~.input_digest` tells whether the input
of a finished block has changed before a resumed run reuses it, and :mod:`~.work_lock` locks the work directory.
This module runs them in stages, as :class:`~.settings.SegmentationSettings` say.

Cross-block consistency. The volume is split into blocks (:class:`~.block_grid.BlockGrid`); each block is
predicted on its extent (core plus halo) from the windows of one global sliding-window grid, clustered on its own,
and stored with the labels of its extent. Each block is then matched with the cores of earlier blocks where they
overlap (:mod:`~.stitching`), so an object crossing a seam keeps one id whenever both blocks agree on it there, and
the clustering runs on block-sized arrays only: peak memory follows the block size, not the volume.

Stages, each a task per block: statistics of the input (when needed), segmentation (read with halo, network,
blending, clustering, block-local labels into the work directory), face matching, then one union-find over the small
match graph on the client, then relabel-and-write. A :class:`~.task_runner.TaskRunner` runs them: in this process
(the default), or on dask.distributed workers (``workers=N`` for a LocalCluster, ``scheduler=`` for a running
cluster, see :mod:`~.dask_cluster`). The labels are the same either way. On workers the input is read by each task
from its path, and a zarr output is written by the tasks; the client holds records, matches and id lookups, whose
size follows the number of blocks and objects, not the volume.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..data.volume_io import (
    LazyVolume,
    check_can_create,
    create_volume,
    ome_zarr_lower_levels,
    open_volume,
    parse_volume_path,
)
from .block_grid import BlockGrid, whole_image_window
from .block_prediction import BlockPredictor, check_network, intensity_threshold, resolve_device
from .block_reading import BlockReader
from .block_store import BlockStore, DirectoryBlockStore, MemoryBlockStore
from .block_tasks import VolumeReader, block_input_digest, core_sums, segment_block
from .dask_cluster import dask_client
from .input_digest import discard_changed_blocks
from .labels_writer import chunk_regions, downsample_region, write_region, write_regions
from .settings import SegmentationSettings
from .stitching import global_ids, match_block
from .task_runner import DaskRunner, InProcessRunner, TaskRunner
from .work_lock import WorkDirectoryLock

WORK_DIRECTORY_SUFFIX = ".spoco-work"
# blocks per task in the stages whose work per block is short next to segmenting it (statistics and input checks
# read, matching reads faces, writing relabels one region), so that the scheduler's few milliseconds per task do
# not set their pace on a large cluster
QUICK_BLOCKS_PER_TASK = 16


def segment_volume(
    image: np.ndarray | torch.Tensor | str | os.PathLike,
    network: Callable[[torch.Tensor], torch.Tensor],
    settings: SegmentationSettings,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    timings: dict[str, float] | None = None,
    workers: int | None = None,
    scheduler: Any = None,
    torch_threads: int | None = None,
    in_channels: int | None = None,
    report: Callable[[str], None] | None = None,
) -> np.ndarray | str:
    """Segment a whole 2D/3D volume into instances, block by block (see the module docstring).

    Args:
        image: ``(C, *S)`` or ``(*S)`` array/tensor, or a volume path read lazily (NIfTI, TIFF,
            ``file.h5:dataset``, zarr; see :mod:`spoco_monai.data.volume_io`). A path is read whole once before
            any work (its statistics, a task per block), so a damaged file or non-finite values stop the run at once.
        network: module (or callable) mapping ``(B, C, *window)`` to ``(B, E, *window)`` embeddings;
            used as given (call ``eval()`` first), run under ``torch.no_grad``.
        settings: window, blocks, blending, clustering, foreground, normalisation and device.
        output: where to write the labels (zarr or ``file.h5:dataset`` chunked, NIfTI or TIFF from memory;
            ``labels.ome.zarr`` as an OME-Zarr label image with a multiscale pyramid for napari, the output to
            choose for large volumes), with the input file's voxel size;
            ``None`` to return them. With an output, finished blocks are kept in ``<output>.spoco-work``
            and a rerun with the same settings resumes there.
        overwrite: replace an existing output (once the new one is complete), and discard a work
            directory left by a run with other settings.
        progress: show a progress bar per stage.
        timings: if given, filled with seconds of the stages ``"network"`` (reading, network, blending),
            ``"affinities"`` (per-window embedding-to-affinity conversion), ``"clustering"`` (per-block clustering and
            matching) and ``"writing"`` (global ids and output); on workers the first three are summed over the
            tasks.
        workers: run the blocks on a dask LocalCluster of this many worker processes (needs ``output`` and
            dask.distributed: ``pip install 'spoco-monai[distributed]'``). The workers start as new Python processes:
            a script calls this under ``if __name__ == "__main__":``.
        scheduler: run the blocks on a running dask cluster: its scheduler's address or a connected
            ``distributed.Client``; the input, the output and its work directory must lie on a file system all
            workers share (needs ``output``).
        torch_threads: torch threads per task on the workers; ``None`` for one on a LocalCluster and the workers'
            own setting on a running cluster.
        in_channels: expected number of image channels; ``None`` to read it from the network's first
            convolution (not checked when the network has none).
        report: called with one line for the user when the run resumes from its work directory: how many
            finished blocks it reuses, and how many it segments again because the image values they read have
            changed since (see :func:`~.input_digest.discard_changed_blocks`); and, at the end, how many objects
            the labels hold.

    Returns:
        the ``(*S)`` int32 labels (int64 beyond 2^31 - 1 objects; 1.. objects, 0 where the clustering
        leaves voxels unlabelled), or ``str(output)`` once the output is complete.

    Raises:
        ValueError: for an image unlike the settings (dimensions, channels), offsets longer than the window, an
            unreadable image or one with non-finite values, a work directory of another run, or workers without
            output.
        TypeError: for an unsupported image type or settings that are not :class:`SegmentationSettings`.
        FileExistsError: if ``output`` exists and ``overwrite`` is False (checked before any work).
        WorkDirectoryLockedError: if another run is writing the same output (checked before any block).
        DaskNotInstalledError: workers or a scheduler are asked for without dask.distributed installed.
        SchedulerUnreachableError: no scheduler answers at ``scheduler``.
    """
    if not isinstance(settings, SegmentationSettings):
        raise TypeError(f"settings must be a SegmentationSettings, got {type(settings).__name__}.")
    if torch_threads is not None and (
        isinstance(torch_threads, bool) or not isinstance(torch_threads, int) or torch_threads < 1
    ):
        raise ValueError(f"torch_threads must be a positive integer or None, got {torch_threads!r}.")
    if (workers is not None or scheduler is not None) and output is None:
        raise ValueError(
            "a run on dask workers needs an output path: the workers share their blocks through its work directory."
        )
    is_path = isinstance(image, (str, os.PathLike))
    if output is not None:
        # absolute, so that workers started elsewhere find the output and its work directory
        output_location = check_can_create(os.path.abspath(os.fspath(output)), overwrite)
        if is_path and parse_volume_path(image).file.resolve() == output_location.file.resolve():
            raise ValueError(f"the output {output} would replace the input image {image}.")
        work = output_location.file.with_name(output_location.file.name + WORK_DIRECTORY_SUFFIX)
    volume = open_volume(image) if is_path else image
    lock: WorkDirectoryLock | None = None
    try:
        if output is not None:
            # before the input is read whole: a second run on this output stops at once
            lock = WorkDirectoryLock(work)
        dims = settings.spatial_dims
        has_channels = _check_image(volume, dims)
        spatial_shape = tuple(int(s) for s in volume.shape[-dims:])
        check_network(network, int(volume.shape[0]) if has_channels else 1, dims, in_channels)
        window = whole_image_window(spatial_shape, settings.roi_size, settings.whole_image_max_voxels)
        grid = BlockGrid(spatial_shape, window, settings.overlap, settings.block_shape, settings.halo)
        if settings.blend == "affinities":
            _check_offsets_fit(settings.offsets, window)
        with dask_client(workers, scheduler) as client:
            runner: TaskRunner
            if client is None:
                runner = InProcessRunner(progress)
            else:
                runner = DaskRunner(client, torch_threads or (1 if workers is not None else None), progress)
            # workers open the input by its path; an array travels to them once
            reader = VolumeReader(image if is_path and not runner.in_process else volume, has_channels)
            # a file is read whole once before any work, so a damaged file or non-finite values stop the run here
            needs_statistics = is_path or settings.normalize
            statistics = (
                _statistics(runner, grid, reader, int(np.prod(volume.shape)), str(image) if is_path else "the image")
                if needs_statistics
                else None
            )
            predictor = BlockPredictor(
                network=network,
                settings=settings,
                window=window,
                has_channels=has_channels,
                device=resolve_device(network, settings.device),
                statistics=statistics if settings.normalize else None,
                intensity_threshold=(
                    intensity_threshold(volume, has_channels) if settings.foreground == "intensity" else None
                ),
            )
            store: BlockStore
            if output is None:
                store = MemoryBlockStore()
            else:
                fingerprint = {
                    "image": os.path.abspath(os.fspath(image)) if is_path else "array",
                    "image_shape": list(volume.shape),
                    "image_dtype": str(volume.dtype),
                    "grid_block_shape": list(grid.block_shape),
                    "grid_halo": list(grid.halo),
                    **predictor.fingerprint(),
                }
                # discards the work directory of a run with other settings with overwrite=True
                store = DirectoryBlockStore(work, fingerprint, discard_mismatch=overwrite)

            def extents(blocks: list) -> Callable:
                # in this process, whole storage chunks are read once for neighbouring extents
                return BlockReader(volume, has_channels, blocks) if runner.in_process else reader

            if store.finished():
                _check_finished_blocks(runner, grid, store, extents, work, report)
            stage_times = {"network": 0.0, "affinities": 0.0, "clustering": 0.0, "writing": 0.0}
            pending = [block for block in grid.blocks if block.index not in store.finished()]
            for _, times in runner.map(
                segment_block, [(block,) for block in pending], "segment", read=extents(pending), predictor=predictor,
                store=store,
            ):
                for name, seconds in times.items():
                    stage_times[name] += seconds
            start = time.perf_counter()
            earlier = [
                (block, [other for other in grid.overlapping_cores(block) if other.index < block.index])
                for block in grid.blocks
            ]
            matches = runner.map(
                match_block, earlier, "match", QUICK_BLOCKS_PER_TASK, store=store, iou_threshold=settings.iou_threshold
            )
            middle = time.perf_counter()
            stage_times["clustering"] += middle - start
            lookups = global_ids([store.record(block.index) for block in grid.blocks], matches)
            # the output is chunked like the block cores
            chunks = tuple(min(s, c.stop - c.start) for s, c in zip(grid.spatial_shape, grid.blocks[0].core))
            if output is None:
                result: np.ndarray | str = np.zeros(grid.spatial_shape, dtype=lookups[0].dtype)
                _write(runner, grid, chunks, lookups, store, result)
            else:
                # the input's geometry, where the input file has one
                affine, element_size = (volume.affine, volume.element_size) if is_path else (None, None)
                with create_volume(
                    output_location, grid.spatial_shape, lookups[0].dtype, chunks=chunks, affine=affine,
                    overwrite=overwrite, element_size=element_size,
                ) as target:
                    # only zarr arrays may be written by several processes at once (one chunk-aligned region each)
                    _write(
                        runner if output_location.format == "zarr" else InProcessRunner(progress), grid, chunks,
                        lookups, store, target,
                    )
                store.remove()
                result = str(output)
            stage_times["writing"] += time.perf_counter() - middle
        if report is not None:
            report(f"{max((int(lookup.max()) for lookup in lookups if lookup.size), default=0)} objects found")
        if timings is not None:
            timings.update(stage_times)
        return result
    finally:
        if lock is not None:
            lock.release()
        if isinstance(volume, LazyVolume):
            volume.close()


def _statistics(
    runner: TaskRunner, grid: BlockGrid, reader: VolumeReader, count: int, name: str
) -> tuple[float, float]:
    """Mean and standard deviation (population) of the ``count`` values of the image, from a task per block core.

    Raises:
        UnreadableVolumeError: a file cannot be read to the end (truncated or corrupt).
        ValueError: the image holds NaN or infinite values.
    """
    sums = runner.map(
        core_sums, [(block,) for block in grid.blocks], "statistics", QUICK_BLOCKS_PER_TASK, read=reader
    )
    if not all(finite for _, _, finite in sums):
        raise ValueError(f"{name} holds NaN or infinite values; expected finite intensities (fix or mask them first).")
    # the cores tile the volume; the sums are added in block order, so every runner gives the same statistics
    mean = sum(total for total, _, _ in sums) / count
    return mean, float(np.sqrt(max(0.0, sum(squares for _, squares, _ in sums) / count - mean**2)))


def _check_finished_blocks(
    runner: TaskRunner,
    grid: BlockGrid,
    store: BlockStore,
    extents: Callable[[list], Callable],
    work: os.PathLike,
    report: Callable[[str], None] | None,
) -> None:
    """Discard the finished blocks of an interrupted run whose input has changed, and say what is reused."""
    finished = store.finished()
    stored = [block for block in grid.blocks if block.index in finished]
    digests = runner.map(
        block_input_digest, [(block,) for block in stored], "check", QUICK_BLOCKS_PER_TASK, read=extents(stored)
    )
    discarded = discard_changed_blocks(store, digests)
    if report is None:
        return
    line = f"resuming the interrupted run in {work}: {len(stored) - len(discarded)} of {len(grid)} blocks reused"
    if discarded:
        line += (
            f", {len(discarded)} finished block(s) discarded and segmented again (the image values they read have "
            "changed since)"
        )
    report(line + ".")


def _write(
    runner: TaskRunner,
    grid: BlockGrid,
    chunks: tuple[int, ...],
    lookups: list[np.ndarray],
    store: BlockStore,
    target: Any,
) -> None:
    """Relabel and write every block's region to ``target``, then the lower levels of an OME-Zarr pyramid."""
    regions = [
        (region, blocks, [lookups[block.index] for block in blocks]) for region, blocks in write_regions(grid, chunks)
    ]
    runner.map(write_region, regions, "write", QUICK_BLOCKS_PER_TASK, store=store, target=target)
    source = target
    for level, lower in enumerate(ome_zarr_lower_levels(target), start=1):
        regions = [(region,) for region in chunk_regions(lower.shape, lower.chunks)]
        runner.map(downsample_region, regions, f"level {level}", QUICK_BLOCKS_PER_TASK, source=source, target=lower)
        source = lower


def _check_image(volume: Any, dims: int) -> bool:
    """Whether the image has a channel axis; raises for an unsupported type or dimension."""
    if not all(hasattr(volume, attribute) for attribute in ("shape", "dtype", "__getitem__")):
        raise TypeError(f"image must be an array, a tensor or a volume path, got {type(volume).__name__}.")
    if len(volume.shape) not in (dims, dims + 1):
        raise ValueError(
            f"image must have shape (C, *S) or (*S) with {dims} spatial axes (the length of roi_size), "
            f"got shape {tuple(volume.shape)}."
        )
    if min(volume.shape) == 0:
        raise ValueError(f"image must not be empty, got shape {tuple(volume.shape)}.")
    return len(volume.shape) == dims + 1


def _check_offsets_fit(offsets: tuple[tuple[int, ...], ...], window: tuple[int, ...]) -> None:
    for offset in offsets:
        if any(abs(o) >= r for o, r in zip(offset, window)):
            raise ValueError(
                f"every offset must be shorter than the window {window} (an affinity compares two voxels of one "
                f"window), got {offset}."
            )
