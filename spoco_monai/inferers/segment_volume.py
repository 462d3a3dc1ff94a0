"""Whole-volume instance segmentation, block by block, with stitching and resumable on-disk bookkeeping.

Cross-block consistency. The volume is split into blocks (:class:`~.block_grid.BlockGrid`); each block
is predicted on its extent (core plus halo) from the windows of one global sliding-window grid, clustered
on its own, and keeps the labels of its core. Where a block's halo covers the core of an earlier block,
both have labelled the same voxels: labels whose intersection over union there exceeds ``iou_threshold``
(0.5 by default, so matches are one-to-one) are the same object. After all blocks, the matches are joined
by connected components (union-find) into global ids. An object crossing a seam therefore keeps one id
whenever both blocks agree on it in the overlap, and the Mutex Watershed runs on block-sized affinity
arrays only: peak memory follows the block size, not the volume.

Modes. ``"affinities"`` (default) blends per-window affinities and runs the Mutex Watershed on them; it is
insensitive to the network placing different windows' embeddings differently, and is the mode for large
volumes. ``"labels"`` blends the embeddings themselves and clusters them per block (Mutex Watershed on the
blended embeddings' affinities, or HDBSCAN); use it when a clustering other than the Mutex Watershed is
wanted, and prefer blocks whose extent fits in one window (the network's embedding space may drift
between windows, and blending embeddings of drifting windows mixes unrelated vectors).

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

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn
from skimage.filters import threshold_otsu
from tqdm import tqdm

from ..clustering import default_offsets, hdbscan_clustering, mutex_watershed, mutex_watershed_from_affinities
from ..data.volume_io import LazyVolume, check_can_create, create_volume, open_volume, parse_volume_path
from .block_grid import Block, BlockGrid
from .block_store import BlockRecord, BlockStore, DirectoryBlockStore, MemoryBlockStore
from .distributed import barrier, block_sharing_group, rank_zero_first
from .work_lock import WorkDirectoryLock
from .stitching import match_labels_by_iou, merge_matched_nodes
from .window_blending import blend_windows

SEGMENT_MODES = ("affinities", "labels")
CLUSTERINGS = ("mws", "hdbscan")
FOREGROUNDS = ("network", "intensity")
# a whole-image window is rounded up to this multiple so that every pooling level of a U-Net (up to 5
# stride-2 levels) sees an even size
WHOLE_IMAGE_MULTIPLE = 32
WORK_DIRECTORY_SUFFIX = ".spoco-work"
# subdirectory of the work directory holding the blocks segmented in a distributed run but not yet matched
UNMATCHED_DIRECTORY = "unmatched"
_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def segment_volume(
    image: np.ndarray | torch.Tensor | str | os.PathLike,
    network: Callable[[torch.Tensor], torch.Tensor],
    roi_size: Sequence[int],
    overlap: float = 0.5,
    block_shape: Sequence[int] | int | None = None,
    mode: str = "affinities",
    output: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    halo: Sequence[int] | int | None = None,
    sw_batch_size: int = 1,
    offsets: Sequence[Sequence[int]] | None = None,
    delta_dist: float = 2.0,
    clustering: str = "mws",
    clustering_kwargs: dict[str, Any] | None = None,
    iou_threshold: float = 0.5,
    sigma_scale: float = 0.125,
    normalize: tuple[float, float] | None = None,
    in_channels: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    timings: dict[str, float] | None = None,
    distributed: bool | None = None,
    foreground: str | None = None,
    whole_image_max_voxels: int | None = None,
) -> np.ndarray | str | None:
    """Segment a whole 2D/3D volume into instances, block by block (see the module docstring).

    Args:
        image: ``(C, *S)`` or ``(*S)`` array/tensor, or a volume path read lazily (NIfTI, TIFF,
            ``file.h5:dataset``, zarr; see :mod:`spoco_monai.data.volume_io`).
        network: module (or callable) mapping ``(B, C, *roi_size)`` to ``(B, E, *roi_size)`` embeddings;
            used as given (call ``eval()`` first), run under ``torch.no_grad``.
        roi_size: sliding-window size, one value per spatial axis (this also sets the spatial dimension).
        overlap: overlap of neighbouring windows, in [0, 1).
        block_shape: approximate core size of a block per axis, rounded to whole window steps; ``None``
            for about 2^21 voxels per block. Larger blocks need more memory, smaller ones stitch more.
        mode: ``"affinities"`` or ``"labels"``.
        output: where to write the labels (zarr or ``file.h5:dataset`` chunked, NIfTI or TIFF from memory);
            ``None`` to return them. With an output, finished blocks are kept in ``<output>.spoco-work``
            and a rerun with the same settings resumes there.
        device: device of the network's input and the blending buffers; ``None`` for the device of the
            network's parameters (CPU for a network without any).
        halo: minimum halo per side in voxels (>= 1); see :class:`~.block_grid.BlockGrid`.
        sw_batch_size: windows per forward pass.
        offsets: Mutex Watershed offsets (default :func:`~spoco_monai.clustering.default_offsets`); the
            first ``len(roi_size)`` are attractive. In ``"affinities"`` mode each must be shorter than the window.
        delta_dist: ``delta_d`` of the embedding loss, used by the affinity formula.
        clustering: per-block clustering in ``"labels"`` mode: ``"mws"`` or ``"hdbscan"``.
        clustering_kwargs: extra keyword arguments of the clustering function (``strides``, ``min_size``,
            ... for the Mutex Watershed; ``min_size`` is required by HDBSCAN); no per-voxel arrays such as
            ``mask``, since each block is clustered on its own.
        iou_threshold: two blocks' labels in their overlap are the same object above this IoU, in [0.5, 1).
        sigma_scale: Gaussian sigma of the window importance map relative to the window size.
        normalize: ``(mean, std)``: the network sees ``(image - mean) / std``, e.g. the whole volume's
            statistics from :func:`~spoco_monai.data.volume_io.volume_mean_std` to match MONAI's
            ``NormalizeIntensity`` preprocessing; ``None`` feeds the image as it is.
        in_channels: expected number of image channels; ``None`` to read it from the network's first
            convolution (not checked when the network has none).
        overwrite: replace an existing output (once the new one is complete), and discard a work
            directory left by a run with other settings.
        progress: show a progress bar over the windows.
        timings: if given, filled with wall-clock seconds of the stages ``"network"`` (reading, network,
            blending), ``"affinities"`` (per-window embedding-to-affinity conversion), ``"clustering"``
            (per-block clustering and matching) and ``"writing"`` (global ids and output).
        foreground: where the objects may be; the clustering labels only these voxels (a mask inside the
            clustering, so a segment's extent follows the mask): ``None`` everywhere; ``"network"`` where the
            probability of the network's last output channel (a foreground logit, see ``SpocoLoss``'s
            ``foreground_weight``) is above 0.5; ``"intensity"`` where the image (mean over channels) is above
            its Otsu threshold, computed once over the whole volume (bright objects on a dark background, as in
            fluorescence). Isolated pieces smaller than ``min_size`` are dropped.
        whole_image_max_voxels: when the image, rounded up to a multiple of 32 voxels per axis, has at most
            this many voxels, the network sees it as one window of that size (no window seams) instead of
            ``roi_size`` windows; ``None`` always uses ``roi_size``.
        distributed: share the blocks among the processes of the initialised torch.distributed process
            group (see the module docstring; needs ``output``): ``None`` (default) whenever a group of more
            than one process is initialised, ``True`` to require one, ``False`` to run alone.

    Returns:
        the ``(*S)`` int32 labels (int64 beyond 2^31 - 1 objects; 1.. objects, 0 where the clustering
        leaves voxels unlabelled), or ``str(output)`` once the output is complete; ``None`` on the ranks
        other than 0 of a distributed run (rank 0 writes the output).

    Raises:
        ValueError: for invalid sizes, overlap, halo, mode, offsets, a channel or dimension mismatch,
            a work directory of another run, or a distributed run without output or process group.
        TypeError: for an unsupported image type.
        FileExistsError: if ``output`` exists and ``overwrite`` is False (checked before any work).
        WorkDirectoryLockedError: if another run is writing the same output (checked before any block).
    """
    if mode not in SEGMENT_MODES:
        raise ValueError(f"mode must be one of {SEGMENT_MODES}, got {mode!r}.")
    if clustering not in CLUSTERINGS:
        raise ValueError(f"clustering must be one of {CLUSTERINGS}, got {clustering!r}.")
    if mode == "affinities" and clustering != "mws":
        raise ValueError(f"mode 'affinities' clusters with the Mutex Watershed; got clustering={clustering!r}.")
    if not 0.5 <= iou_threshold < 1:
        raise ValueError(f"iou_threshold must be in [0.5, 1) so that matches are one-to-one, got {iou_threshold}.")
    if normalize is not None and not (len(normalize) == 2 and normalize[1] > 0):
        raise ValueError(f"normalize must be (mean, std) with std > 0, got {normalize}.")
    if foreground is not None and foreground not in FOREGROUNDS:
        raise ValueError(f"foreground must be None or one of {FOREGROUNDS}, got {foreground!r}.")
    if whole_image_max_voxels is not None and not whole_image_max_voxels >= 1:
        raise ValueError(f"whole_image_max_voxels must be None or >= 1, got {whole_image_max_voxels!r}.")
    if not (isinstance(sw_batch_size, int) and sw_batch_size >= 1):
        raise ValueError(f"sw_batch_size must be a positive integer, got {sw_batch_size!r}.")
    rank, world_size = block_sharing_group(distributed)
    if world_size > 1 and output is None:
        raise ValueError(
            "a distributed run needs an output path: the ranks share their blocks through its work directory."
        )
    roi_size = tuple(roi_size)
    dims = len(roi_size)
    if dims not in (2, 3):
        raise ValueError(f"roi_size must have 2 or 3 values (the spatial dimensions), got {roi_size}.")
    if output is not None:
        output_location = check_can_create(output, overwrite)
        same_file = isinstance(image, (str, os.PathLike)) and (
            parse_volume_path(image).file.resolve() == output_location.file.resolve()
        )
        if same_file:
            raise ValueError(f"the output {output} would replace the input image {image}.")
    volume = open_volume(image) if isinstance(image, (str, os.PathLike)) else image
    lock: WorkDirectoryLock | None = None
    try:
        has_channels = _check_image(volume, dims)
        spatial_shape = tuple(int(s) for s in volume.shape[-dims:])
        channels = int(volume.shape[0]) if has_channels else 1
        _check_network(network, channels, dims, in_channels)
        roi_size = whole_image_window(spatial_shape, roi_size, whole_image_max_voxels)
        grid = BlockGrid(spatial_shape, roi_size, overlap, block_shape, halo)
        offsets = [tuple(int(v) for v in o) for o in (default_offsets(dims) if offsets is None else offsets)]
        if mode == "affinities":
            _check_offsets_fit(offsets, roi_size)
        segmenter = _BlockSegmenter(
            network=network,
            roi_size=roi_size,
            has_channels=has_channels,
            device=resolve_device(network, device),
            mode=mode,
            clustering=clustering,
            clustering_kwargs=dict(clustering_kwargs or {}),
            offsets=offsets,
            delta_dist=delta_dist,
            sw_batch_size=sw_batch_size,
            sigma_scale=sigma_scale,
            normalize=None if normalize is None else (float(normalize[0]), float(normalize[1])),
            foreground=foreground,
            intensity_threshold=intensity_threshold(volume, has_channels) if foreground == "intensity" else None,
        )
        store: BlockStore
        unmatched: BlockStore | None = None
        if output is None:
            store = MemoryBlockStore()
        else:
            work = output_location.file.with_name(output_location.file.name + WORK_DIRECTORY_SUFFIX)
            fingerprint = {
                "image": os.path.abspath(os.fspath(image)) if isinstance(image, (str, os.PathLike)) else "array",
                "image_shape": list(volume.shape),
                "image_dtype": str(volume.dtype),
                "overlap": overlap,
                "block_shape": list(grid.block_shape),
                "halo": list(grid.halo),
                "iou_threshold": iou_threshold,
                **segmenter.fingerprint(),
            }
            # rank 0 alone may discard a work directory of other settings, and locks it against other runs
            lock = WorkDirectoryLock(work) if rank == 0 else None
            with rank_zero_first(rank, world_size):
                store = DirectoryBlockStore(work, fingerprint, discard_mismatch=overwrite)
                unmatched = (
                    DirectoryBlockStore(work / UNMATCHED_DIRECTORY, fingerprint, discard_mismatch=overwrite)
                    if world_size > 1
                    else None
                )
        stage_times = {"network": 0.0, "affinities": 0.0, "clustering": 0.0, "writing": 0.0}
        if unmatched is None:
            _process_blocks(volume, grid, store, segmenter, iou_threshold, progress, stage_times)
        else:
            _process_shared_blocks(
                volume, grid, store, unmatched, segmenter, iou_threshold, progress, stage_times, rank, world_size
            )
            if rank != 0:
                return None
        start = time.perf_counter()
        if output is None:
            result: np.ndarray | str = _assemble(grid, store, None)
        else:
            affine = volume.affine if isinstance(volume, LazyVolume) else None
            _assemble(grid, store, output_location, affine=affine, overwrite=overwrite)
            store.remove()
            result = str(output)
        stage_times["writing"] += time.perf_counter() - start
        if timings is not None:
            timings.update(stage_times)
        return result
    finally:
        if lock is not None:
            lock.release()
        if isinstance(volume, LazyVolume):
            volume.close()


@dataclass(frozen=True)
class _BlockSegmenter:
    """Everything that turns a block's extent into labels: prediction settings and clustering."""

    network: Callable[[torch.Tensor], torch.Tensor]
    roi_size: tuple[int, ...]
    has_channels: bool
    device: torch.device
    mode: str
    clustering: str
    clustering_kwargs: dict[str, Any]
    offsets: list[tuple[int, ...]]
    delta_dist: float
    sw_batch_size: int
    sigma_scale: float
    normalize: tuple[float, float] | None
    foreground: str | None = None
    intensity_threshold: float | None = None

    def predict(
        self, volume: Any, block: Block, on_windows: Callable[[int], None], timings: dict[str, float]
    ) -> torch.Tensor:
        """Blended affinities (``"affinities"`` mode) or embeddings of the block's extent.

        With a foreground setting, one more, last channel holds the foreground probability (0 or 1 for the
        intensity rule).
        """
        region = volume[(slice(None), *block.extent)] if self.has_channels else volume[block.extent][None]
        region = region if isinstance(region, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(region))
        region = region.to(device=self.device, dtype=torch.float32)
        bright = region.mean(dim=0, keepdim=True) > self.intensity_threshold if self.foreground == "intensity" else None
        if self.normalize is not None:
            # out of place: without a copy so far, the region may share memory with the caller's image
            region = (region - self.normalize[0]) / self.normalize[1]
        prediction = blend_windows(
            region, self.network, self.roi_size, block.window_starts,
            output="affinities" if self.mode == "affinities" else "embeddings", offsets=self.offsets,
            delta_dist=self.delta_dist, sw_batch_size=self.sw_batch_size, sigma_scale=self.sigma_scale,
            on_windows=on_windows, timings=timings, foreground_channel=self.foreground == "network",
        )
        return prediction if bright is None else torch.cat([prediction, bright.to(prediction)])

    def cluster(self, prediction: torch.Tensor) -> np.ndarray:
        """Labels of the block's extent."""
        values = prediction.cpu().numpy()
        options = dict(self.clustering_kwargs)
        if self.foreground is not None:
            values, options["mask"] = values[:-1], values[-1] > 0.5
        if self.mode == "affinities":
            return mutex_watershed_from_affinities(values, self.offsets, **options)
        if self.clustering == "mws":
            return mutex_watershed(values, self.offsets, delta_dist=self.delta_dist, **options)
        return hdbscan_clustering(values, **options)

    def fingerprint(self) -> dict[str, Any]:
        """JSON-serialisable settings, with a digest of the network's weights."""
        settings = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("network", "device")}
        settings["clustering_kwargs"] = repr(sorted(self.clustering_kwargs.items()))
        settings["network"] = _network_fingerprint(self.network)
        return settings


def _process_blocks(
    volume: Any,
    grid: BlockGrid,
    store: BlockStore,
    segmenter: _BlockSegmenter,
    iou_threshold: float,
    progress: bool,
    stage_times: dict[str, float],
) -> None:
    # blocks run in index order, so every earlier block is finished (now or in an interrupted run)
    # when a block is matched against the cores of earlier blocks: resumed runs match the same way
    pending = [block for block in grid.blocks if block.index not in store.finished()]
    with tqdm(
        total=sum(block.num_windows for block in pending), desc="segment", unit="window", disable=not progress
    ) as bar, torch.no_grad():
        for block in pending:
            labels, num_core = _segment_block(volume, block, segmenter, bar.update, stage_times)
            start = time.perf_counter()
            _save_matched(block, labels, num_core, grid, store, iou_threshold)
            stage_times["clustering"] += time.perf_counter() - start


def _process_shared_blocks(
    volume: Any,
    grid: BlockGrid,
    store: BlockStore,
    unmatched: BlockStore,
    segmenter: _BlockSegmenter,
    iou_threshold: float,
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
    with tqdm(
        total=sum(block.num_windows for block in mine),
        desc=f"segment (rank {rank}/{world_size})",
        unit="window",
        disable=not progress,
        position=rank,
    ) as bar, torch.no_grad():
        for block in mine:
            labels, num_core = _segment_block(volume, block, segmenter, bar.update, stage_times)
            no_matches = np.zeros((0, 3), dtype=np.int64)
            unmatched.save(block.index, labels, BlockRecord(num_core, int(labels.max()), no_matches))
    barrier(world_size)
    if rank != 0:
        return
    start = time.perf_counter()
    finished = store.finished()
    for block in grid.blocks:
        if block.index not in finished:
            record = unmatched.record(block.index)
            labels = np.asarray(unmatched.core_labels(block.index))
            _save_matched(block, labels, record.num_core_labels, grid, store, iou_threshold)
    stage_times["clustering"] += time.perf_counter() - start


def _segment_block(
    volume: Any,
    block: Block,
    segmenter: _BlockSegmenter,
    on_windows: Callable[[int], None],
    stage_times: dict[str, float],
) -> tuple[np.ndarray, int]:
    """Labels of the block's extent, relabelled by :func:`_core_labels_first`, and their number in the core."""
    start, affinities_before = time.perf_counter(), stage_times["affinities"]
    prediction = segmenter.predict(volume, block, on_windows, stage_times)
    middle = time.perf_counter()
    labels = segmenter.cluster(prediction)
    del prediction
    labels, num_core = _core_labels_first(labels, block.core_in_extent)
    stage_times["network"] += middle - start - (stage_times["affinities"] - affinities_before)
    stage_times["clustering"] += time.perf_counter() - middle
    return labels, num_core


def _save_matched(
    block: Block, labels: np.ndarray, num_core: int, grid: BlockGrid, store: BlockStore, iou_threshold: float
) -> None:
    """Match the block's extent labels against the stored cores of earlier blocks and store the block."""
    matches = _match_earlier_blocks(block, labels, grid, store, iou_threshold)
    store.save(block.index, labels[block.core_in_extent], BlockRecord(num_core, int(labels.max()), matches))


def _core_labels_first(labels: np.ndarray, core: tuple[slice, ...]) -> tuple[np.ndarray, int]:
    """Relabel to 1.. with the labels present in the core first, so the core's ids are ``1 .. num_core``."""
    # negative labels (e.g. unfilled HDBSCAN noise) count as unlabelled, like 0
    labels = np.maximum(labels, 0).astype(np.int64, copy=False)
    in_core = np.unique(labels[core])
    in_core = in_core[in_core > 0]
    everywhere = np.unique(labels)
    halo_only = np.setdiff1d(everywhere[everywhere > 0], in_core)
    lookup = np.zeros(int(everywhere.max()) + 1, dtype=np.uint32)
    lookup[in_core] = np.arange(1, len(in_core) + 1)
    lookup[halo_only] = np.arange(len(in_core) + 1, len(in_core) + len(halo_only) + 1)
    return lookup[labels], len(in_core)


def _match_earlier_blocks(
    block: Block, labels: np.ndarray, grid: BlockGrid, store: BlockStore, iou_threshold: float
) -> np.ndarray:
    matches = [np.zeros((0, 3), dtype=np.int64)]
    for other in grid.overlapping_cores(block):
        if other.index > block.index:
            continue
        shared = tuple(
            slice(max(e.start, c.start), min(e.stop, c.stop)) for e, c in zip(block.extent, other.core)
        )
        here = labels[tuple(slice(s.start - e.start, s.stop - e.start) for s, e in zip(shared, block.extent))]
        there = store.core_labels(other.index)[
            tuple(slice(s.start - c.start, s.stop - c.start) for s, c in zip(shared, other.core))
        ]
        pairs = match_labels_by_iou(here, np.asarray(there), iou_threshold)
        matches.append(np.column_stack([pairs[:, 0], np.full(len(pairs), other.index), pairs[:, 1]]))
    return np.concatenate(matches).astype(np.int64)


def _assemble(
    grid: BlockGrid,
    store: BlockStore,
    output: Any,
    affine: np.ndarray | None = None,
    overwrite: bool = False,
) -> np.ndarray | None:
    """Join matched labels into global ids and write every core, into memory or into ``output``."""
    records = [store.record(block.index) for block in grid.blocks]
    first_node = np.cumsum([0] + [record.num_labels for record in records])
    edges = [
        np.column_stack([first_node[index] + r.matches[:, 0] - 1, first_node[r.matches[:, 1]] + r.matches[:, 2] - 1])
        for index, r in enumerate(records)
    ]
    components = merge_matched_nodes(int(first_node[-1]), np.concatenate(edges))
    core_nodes = [first_node[i] + np.arange(r.num_core_labels) for i, r in enumerate(records)]
    # consecutive ids over the objects that own voxels, in order of first appearance
    _, final_ids = np.unique(components[np.concatenate(core_nodes)], return_inverse=True)
    num_objects = int(final_ids.max()) + 1 if final_ids.size else 0
    dtype = np.int32 if num_objects <= np.iinfo(np.int32).max else np.int64
    boundaries = np.cumsum([0] + [len(nodes) for nodes in core_nodes])
    lookups = [
        np.concatenate([[0], final_ids[boundaries[i] : boundaries[i + 1]] + 1]).astype(dtype)
        for i in range(len(records))
    ]
    if output is None:
        labels = np.zeros(grid.spatial_shape, dtype=dtype)
        for block, lookup in zip(grid.blocks, lookups):
            labels[block.core] = lookup[store.core_labels(block.index)]
        return labels
    chunks = tuple(min(s, c.stop - c.start) for s, c in zip(grid.spatial_shape, grid.blocks[0].core))
    with create_volume(output, grid.spatial_shape, dtype, chunks=chunks, affine=affine, overwrite=overwrite) as target:
        for block, lookup in zip(grid.blocks, lookups):
            target[block.core] = lookup[store.core_labels(block.index)]
    return None


def whole_image_window(
    spatial_shape: Sequence[int], roi_size: Sequence[int], max_voxels: int | None
) -> tuple[int, ...]:
    """The window covering the whole image (rounded up to a multiple of 32) if it has at most ``max_voxels``
    voxels, else ``roi_size``."""
    whole = tuple(-(-int(s) // WHOLE_IMAGE_MULTIPLE) * WHOLE_IMAGE_MULTIPLE for s in spatial_shape)
    if max_voxels is not None and int(np.prod(whole)) <= max_voxels:
        return whole
    return tuple(int(r) for r in roi_size)


def intensity_threshold(volume: Any, has_channels: bool, max_samples: int = 2**22) -> float:
    """Otsu threshold of the image's intensity (mean over channels), from at most ``max_samples`` voxels.

    A large volume is read on a regular grid of every k-th voxel along each axis, so the threshold costs a
    fraction of one pass over the data.
    """
    spatial = tuple(volume.shape[1:] if has_channels else volume.shape)
    step = max(1, int(np.ceil((np.prod(spatial) / max_samples) ** (1 / len(spatial)))))
    grid = tuple(slice(None, None, step) for _ in spatial)
    sample = volume[(slice(None), *grid)] if has_channels else volume[grid][None]
    sample = sample.detach().cpu().numpy() if isinstance(sample, torch.Tensor) else np.asarray(sample)
    values = sample.astype(np.float32).mean(axis=0)
    return float(threshold_otsu(values)) if values.min() < values.max() else float(values.min())


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


def resolve_device(network: Callable[[torch.Tensor], torch.Tensor], device: str | torch.device | None) -> torch.device:
    """``device``, or else the device of the network's parameters (CPU for a network without any)."""
    if device is not None:
        return torch.device(device)
    parameters = network.parameters() if isinstance(network, nn.Module) else iter(())
    return next((p.device for p in parameters), torch.device("cpu"))


def _check_network(
    network: Callable[[torch.Tensor], torch.Tensor], channels: int, dims: int, in_channels: int | None
) -> None:
    modules = network.modules() if isinstance(network, nn.Module) else iter(())
    first = next((m for m in modules if isinstance(m, _CONVOLUTIONS)), None)
    if first is not None and len(first.kernel_size) != dims:
        raise ValueError(
            f"the network's first convolution is {len(first.kernel_size)}D but roi_size has {dims} axes."
        )
    expected = in_channels if in_channels is not None else (first.in_channels if first is not None else None)
    if expected is not None and expected != channels:
        raise ValueError(f"the network expects {expected} input channels, the image has {channels}.")


def _check_offsets_fit(offsets: list[tuple[int, ...]], roi_size: tuple[int, ...]) -> None:
    for offset in offsets:
        if len(offset) != len(roi_size) or any(abs(o) >= r for o, r in zip(offset, roi_size)):
            raise ValueError(
                f"every offset must have {len(roi_size)} values shorter than the window {roi_size} "
                f"(an affinity compares two voxels of one window), got {offset}."
            )


def _network_fingerprint(network: Callable[[torch.Tensor], torch.Tensor]) -> str:
    if not isinstance(network, nn.Module):
        return type(network).__name__
    digest = hashlib.sha1()
    for name, tensor in network.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
