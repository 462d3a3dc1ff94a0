"""Whole-volume sliding-window inference: blended per-window affinities, blockwise Mutex Watershed, stitching."""

from __future__ import annotations

from .block_grid import Block, BlockGrid
from .block_store import BlockRecord, BlockStore, DirectoryBlockStore, MemoryBlockStore
from .segment_volume import segment_volume
from .sliding_window import SpocoSlidingWindowInferer
from .stitching import match_labels_by_iou, merge_matched_nodes
from .window_blending import blend_windows

__all__ = [
    "Block",
    "BlockGrid",
    "BlockRecord",
    "BlockStore",
    "DirectoryBlockStore",
    "MemoryBlockStore",
    "SpocoSlidingWindowInferer",
    "blend_windows",
    "match_labels_by_iou",
    "merge_matched_nodes",
    "segment_volume",
]
