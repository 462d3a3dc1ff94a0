"""Whole-volume sliding-window inference: blended per-window affinities, blockwise Mutex Watershed, stitching.

- :class:`SegmentationSettings`: everything that decides the labels, in one frozen object that Python, the
  inferer, the command line and the bundle's ``inference.json`` share.
- :func:`segment_volume`: a volume (array or lazily read file) to instance labels, block by block with
  bounded memory, resumable, written to zarr (OME-Zarr with a pyramid)/HDF5/NIfTI/TIFF or returned; in this
  process or as tasks on dask.distributed workers (a LocalCluster, or any cluster by its scheduler's address).
- :class:`SpocoSlidingWindowInferer`: the same as a MONAI ``Inferer`` (evaluators, bundle configs).

``blend="affinities"`` (default) turns every window's embeddings into affinities inside that window, blends
the affinities and runs the Mutex Watershed: use it for large volumes and whenever windows may place their
embeddings differently. ``blend="embeddings"`` blends embeddings and clusters each block (Mutex Watershed or
HDBSCAN): use it for HDBSCAN, with blocks about one window large. Both stitch blocks by IoU in the halo.
"""

from __future__ import annotations

from .block_grid import Block, BlockGrid
from .block_store import BlockRecord, BlockStore, DirectoryBlockStore, MemoryBlockStore
from .dask_cluster import DaskNotInstalledError, SchedulerUnreachableError
from .segment_volume import segment_volume
from .settings import SegmentationSettings
from .sliding_window import SpocoSlidingWindowInferer
from .stitching import match_labels_by_iou, merge_matched_nodes
from .window_blending import WindowBlender, blend_windows
from .work_lock import WorkDirectoryLock, WorkDirectoryLockedError

__all__ = [
    "Block",
    "BlockGrid",
    "BlockRecord",
    "BlockStore",
    "DaskNotInstalledError",
    "DirectoryBlockStore",
    "MemoryBlockStore",
    "SchedulerUnreachableError",
    "SegmentationSettings",
    "SpocoSlidingWindowInferer",
    "WindowBlender",
    "WorkDirectoryLock",
    "WorkDirectoryLockedError",
    "blend_windows",
    "match_labels_by_iou",
    "merge_matched_nodes",
    "segment_volume",
]
