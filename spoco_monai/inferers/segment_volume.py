"""Whole-volume instance segmentation, block by block, with stitching and resumable on-disk bookkeeping.

The parts, one job each: :mod:`~.block_grid` plans the blocks, :mod:`~.block_reading` reads their extents (each
storage chunk decoded about once), :mod:`~.block_prediction` predicts and blends a block's windows,
:mod:`~.block_clustering` clusters a block, :mod:`~.stitching` matches blocks and joins their labels into global
ids, and :mod:`~.labels_writer` writes the result; :mod:`~.block_store` keeps finished blocks,
:mod:`~.input_digest` tells whether the input of a finished block has changed before a resumed run reuses it, and
:mod:`~.work_lock` locks the work directory. This module runs them in order, as
:class:`~.settings.SegmentationSettings` say.

Cross-block consistency. The volume is split into blocks (:class:`~.block_grid.BlockGrid`); each block
is predicted on its extent (core plus halo) from the windows of one global sliding-window grid, clustered
on its own, and keeps the labels of its core. Blocks are matched with the cores of earlier blocks where they
overlap (:mod:`~.stitching`), so an object crossing a seam keeps one id whenever both blocks agree on it there,
and the clustering runs on block-sized arrays only: peak memory follows the block size, not the volume.

Several processes. Inside a torch.distributed process group (e.g. under ``torchrun``; gloo on CPU, NCCL on
GPUs) every process calls :func:`segment_volume` with the same arguments and an output path. Block ``i``
goes to rank ``i % world_size``; each rank writes its blocks' labels (core and halo) into the work
directory next to the output, which must therefore lie on a file system all processes share. After a
barrier, rank 0 matches every block against the cores of the earlier blocks in index order, exactly as a
single process does, joins the ids, writes the output and returns its path; the other ranks return
``None`` right after the barrier. The output is identical to the single-process run's, and an
interrupted distributed run resumes like a single-process one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from tqdm import tqdm

from ..data.volume_io import LazyVolume, check_can_create, open_volume, parse_volume_path
from .block_clustering import cluster_block, core_labels_first
from .block_grid import Block, BlockGrid, whole_image_window
from .block_prediction import BlockPredictor, check_network, image_statistics, intensity_threshold, resolve_device
from .block_reading import BlockReader
from .block_store import BlockRecord, BlockStore, DirectoryBlockStore, MemoryBlockStore
from .distributed import block_sharing_group
from .freed_memory import release_freed_memory
from .input_digest import discard_changed_blocks, input_digest
from .labels_writer import write_labels
from .settings import SegmentationSettings
from .stitching import global_ids, save_matched
from .work_lock import WorkDirectoryLock

WORK_DIRECTORY_SUFFIX = ".spoco-work"
# subdirectory of the work directory holding the blocks segmented in a distributed run but not yet matched
UNMATCHED_DIRECTORY = "unmatched"


def segment_volume(
    image: np.ndarray | torch.Tensor | str | os.PathLike,
    network: Callable[[torch.Tensor], torch.Tensor],
    settings: SegmentationSettings,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    timings: dict[str, float] | None = None,
    distributed: bool | None = None,
    in_channels: int | None = None,
    report: Callable[[str], None] | None = None,
) -> np.ndarray | str | None:
    """Segment a whole 2D/3D volume into instances, block by block (see the module docstring).

    Args:
        image: ``(C, *S)`` or ``(*S)`` array/tensor, or a volume path read lazily (NIfTI, TIFF,
            ``file.h5:dataset``, zarr; see :mod:`spoco_monai.data.volume_io`). A path is read whole once before
            any work (its statistics), so a damaged file or non-finite values stop the run at once.
        network: module (or callable) mapping ``(B, C, *window)`` to ``(B, E, *window)`` embeddings;
            used as given (call ``eval()`` first), run under ``torch.no_grad``.
        settings: window, blocks, blending, clustering, foreground, normalisation and device.
        output: where to write the labels (zarr or ``file.h5:dataset`` chunked, NIfTI or TIFF from memory;
            ``labels.ome.zarr`` as an OME-Zarr label image for napari), with the input file's voxel size;
            ``None`` to return them. With an output, finished blocks are kept in ``<output>.spoco-work``
            and a rerun with the same settings resumes there.
        overwrite: replace an existing output (once the new one is complete), and discard a work
            directory left by a run with other settings.
        progress: show progress bars over the windows (with the block being clustered) and the final write.
        timings: if given, filled with wall-clock seconds of the stages ``"network"`` (reading, network,
            blending), ``"affinities"`` (per-window embedding-to-affinity conversion), ``"clustering"``
            (per-block clustering and matching) and ``"writing"`` (global ids and output).
        distributed: share the blocks among the processes of the initialised torch.distributed process
            group (see the module docstring; needs ``output``): ``None`` (default) whenever a group of more
            than one process is initialised, ``True`` to require one, ``False`` to run alone.
        in_channels: expected number of image channels; ``None`` to read it from the network's first
            convolution (not checked when the network has none).
        report: called with one line for the user when the run resumes from its work directory: how many
            finished blocks it reuses, and how many it segments again because the image values they read have
            changed since (see :func:`~.input_digest.discard_changed_blocks`); and, at the end, how many objects
            the labels hold.

    Returns:
        the ``(*S)`` int32 labels (int64 beyond 2^31 - 1 objects; 1.. objects, 0 where the clustering
        leaves voxels unlabelled), or ``str(output)`` once the output is complete; ``None`` on the ranks
        other than 0 of a distributed run (rank 0 writes the output).

    Raises:
        ValueError: for an image unlike the settings (dimensions, channels), offsets longer than the window, an
            unreadable image or one with non-finite values, a work directory of another run, or a distributed
            run without output or process group.
        TypeError: for an unsupported image type or settings that are not :class:`SegmentationSettings`.
        FileExistsError: if ``output`` exists and ``overwrite`` is False (checked before any work).
        WorkDirectoryLockedError: if another run is writing the same output (checked before any block).
    """
    if not isinstance(settings, SegmentationSettings):
        raise TypeError(f"settings must be a SegmentationSettings, got {type(settings).__name__}.")
    rank, world_size = block_sharing_group(distributed)
    if world_size > 1 and output is None:
        raise ValueError(
            "a distributed run needs an output path: the ranks share their blocks through its work directory."
        )
    is_path = isinstance(image, (str, os.PathLike))
    if output is not None:
        output_location = check_can_create(output, overwrite)
        if is_path and parse_volume_path(image).file.resolve() == output_location.file.resolve():
            raise ValueError(f"the output {output} would replace the input image {image}.")
        work = output_location.file.with_name(output_location.file.name + WORK_DIRECTORY_SUFFIX)
    volume = open_volume(image) if is_path else image
    lock: WorkDirectoryLock | None = None
    try:
        if output is not None and rank == 0:
            # before the input is read whole: a second run on this output stops at once; rank 0 alone may
            # discard a work directory of other settings
            lock = WorkDirectoryLock(work)
        dims = settings.spatial_dims
        has_channels = _check_image(volume, dims)
        spatial_shape = tuple(int(s) for s in volume.shape[-dims:])
        check_network(network, int(volume.shape[0]) if has_channels else 1, dims, in_channels)
        window = whole_image_window(spatial_shape, settings.roi_size, settings.whole_image_max_voxels)
        grid = BlockGrid(spatial_shape, window, settings.overlap, settings.block_shape, settings.halo)
        if settings.blend == "affinities":
            _check_offsets_fit(settings.offsets, window)
        # a file is read whole once before any work, so a damaged file or non-finite values stop the run here
        needs_statistics = is_path or settings.normalize
        statistics = image_statistics(volume, str(image) if is_path else "the image") if needs_statistics else None
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
        unmatched: BlockStore | None = None
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
            # rank 0 sets the work directory up (or discards another run's, and finished blocks of another input)
            # before the other ranks open it; a process alone, even inside a process group (distributed=False),
            # waits for nobody
            with idist.one_rank_first() if world_size > 1 else nullcontext():
                store = DirectoryBlockStore(work, fingerprint, discard_mismatch=overwrite)
                unmatched = (
                    DirectoryBlockStore(work / UNMATCHED_DIRECTORY, fingerprint, discard_mismatch=overwrite)
                    if world_size > 1
                    else None
                )
                if rank == 0:
                    _check_finished_blocks(volume, has_channels, grid, store, unmatched, work, report)
        stage_times = {"network": 0.0, "affinities": 0.0, "clustering": 0.0, "writing": 0.0}
        if unmatched is None:
            _process_blocks(volume, grid, store, predictor, progress, stage_times)
        else:
            _process_shared_blocks(volume, grid, store, unmatched, predictor, progress, stage_times, rank, world_size)
            if rank != 0:
                return None
        start = time.perf_counter()
        lookups = global_ids(grid, store)
        if output is None:
            result: np.ndarray | str = write_labels(grid, store, lookups, None, progress=progress)
        else:
            # the input's geometry, where the input file has one
            affine, element_size = (volume.affine, volume.element_size) if is_path else (None, None)
            write_labels(
                grid, store, lookups, output_location, affine=affine, element_size=element_size, overwrite=overwrite,
                progress=progress,
            )
            store.remove()
            result = str(output)
        stage_times["writing"] += time.perf_counter() - start
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


def _check_finished_blocks(
    volume: Any,
    has_channels: bool,
    grid: BlockGrid,
    store: BlockStore,
    unmatched: BlockStore | None,
    work: os.PathLike,
    report: Callable[[str], None] | None,
) -> None:
    """Discard the finished blocks of an interrupted run whose input has changed, and say what is reused."""
    discarded = discard_changed_blocks(volume, has_channels, grid, store, matched=True)
    if unmatched is not None:
        discarded |= discard_changed_blocks(volume, has_channels, grid, unmatched, matched=False)
    reused = len(store.finished() | (unmatched.finished() if unmatched is not None else set()))
    if report is None or reused + len(discarded) == 0:
        return
    line = f"resuming the interrupted run in {work}: {reused} of {len(grid)} blocks reused"
    if discarded:
        line += (
            f", {len(discarded)} finished block(s) discarded and segmented again (the image values they read have "
            "changed since, or those of a block they were stitched to)"
        )
    report(line + ".")


def _process_blocks(
    volume: Any,
    grid: BlockGrid,
    store: BlockStore,
    predictor: BlockPredictor,
    progress: bool,
    stage_times: dict[str, float],
) -> None:
    # blocks run in index order, so every earlier block is finished (now or in an interrupted run)
    # when a block is matched against the cores of earlier blocks: resumed runs match the same way
    pending = [block for block in grid.blocks if block.index not in store.finished()]
    reader = BlockReader(volume, predictor.has_channels, pending)
    with tqdm(
        total=sum(block.num_windows for block in pending), desc="segment", unit="window", disable=not progress
    ) as bar, torch.no_grad():
        for block in pending:
            labels, num_core, digest = _segment_block(reader, block, len(grid), predictor, bar, stage_times)
            start = time.perf_counter()
            save_matched(block, labels, num_core, grid, store, predictor.settings.iou_threshold, digest)
            stage_times["clustering"] += time.perf_counter() - start


def _process_shared_blocks(
    volume: Any,
    grid: BlockGrid,
    store: BlockStore,
    unmatched: BlockStore,
    predictor: BlockPredictor,
    progress: bool,
    stage_times: dict[str, float],
    rank: int,
    world_size: int,
) -> None:
    # a block is matched against the cores of all earlier blocks, which other ranks may still be working
    # on: each rank first stores the whole extent labels of its blocks (the halo is what matching needs),
    # and after the barrier rank 0 matches all of them in index order, like the single-process run
    done = store.finished() | unmatched.finished()
    mine = [block for block in grid.blocks if block.index % world_size == rank and block.index not in done]
    reader = BlockReader(volume, predictor.has_channels, mine)
    with tqdm(
        total=sum(block.num_windows for block in mine),
        desc=f"segment (rank {rank}/{world_size})",
        unit="window",
        disable=not progress,
        position=rank,
    ) as bar, torch.no_grad():
        for block in mine:
            labels, num_core, digest = _segment_block(reader, block, len(grid), predictor, bar, stage_times)
            no_matches = np.zeros((0, 3), dtype=np.int64)
            unmatched.save(block.index, labels, BlockRecord(num_core, int(labels.max()), no_matches, digest))
    idist.barrier()
    if rank != 0:
        return
    start = time.perf_counter()
    pending = [block for block in grid.blocks if block.index not in store.finished()]
    for block in tqdm(pending, desc="match", unit="block", disable=not progress):
        record = unmatched.record(block.index)
        labels = np.asarray(unmatched.core_labels(block.index))
        save_matched(
            block, labels, record.num_core_labels, grid, store, predictor.settings.iou_threshold, record.input_digest
        )
    stage_times["clustering"] += time.perf_counter() - start


def _segment_block(
    reader: BlockReader,
    block: Block,
    num_blocks: int,
    predictor: BlockPredictor,
    bar: tqdm,
    stage_times: dict[str, float],
) -> tuple[np.ndarray, int, str]:
    """Labels of the block's extent, core labels first (:func:`~.block_clustering.core_labels_first`), their
    number in the core, and the digest of the image values the block read."""
    start, affinities_before = time.perf_counter(), stage_times["affinities"]
    region = reader(block)
    digest = input_digest(region)
    prediction = predictor(region, block, bar.update, stage_times)
    del region
    middle = time.perf_counter()
    # the clustering of a large block takes a while with the window count standing still: say what runs
    bar.set_postfix_str(f"clustering block {block.index + 1}/{num_blocks}")
    labels = cluster_block(prediction, predictor.settings)
    bar.set_postfix_str("")
    del prediction
    release_freed_memory()
    labels, num_core = core_labels_first(labels, block.core_in_extent)
    stage_times["network"] += middle - start - (stage_times["affinities"] - affinities_before)
    stage_times["clustering"] += time.perf_counter() - middle
    return labels, num_core, digest


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
