"""Storage of segmented blocks, in memory or in a work directory from which an interrupted run resumes.

A block is stored with the labels of its whole extent (core and halo, the halo being what stitching compares),
so that it can be stored the moment it is segmented, by whichever process segmented it, in any order.
"""

from __future__ import annotations

import json
import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.atomic import write_atomically


@dataclass(frozen=True)
class BlockRecord:
    """What stitching needs to know about a finished block.

    Attributes:
        num_core_labels: labels ``1 .. num_core_labels`` occur in the block's core.
        num_labels: labels ``num_core_labels + 1 .. num_labels`` occur only in its halo.
        input_digest: digest of the image values the block read (:func:`~.input_digest.input_digest`), by which a
            resumed run tells whether the input has changed since; ``None`` when unknown.
    """

    num_core_labels: int
    num_labels: int
    input_digest: str | None = None


class BlockStore(ABC):
    """Finished blocks: the labels of their extents (local ids, ``uint32``) and their stitching records."""

    @abstractmethod
    def finished(self) -> set[int]:
        """Indices of the blocks already stored."""

    @abstractmethod
    def save(self, index: int, labels: np.ndarray, record: BlockRecord) -> None:
        """Store block ``index`` with the labels of its extent; once this returns the block counts as finished."""

    @abstractmethod
    def labels(self, index: int) -> np.ndarray:
        """The stored extent labels of block ``index`` (possibly memory-mapped, read-only)."""

    @abstractmethod
    def record(self, index: int) -> BlockRecord:
        """The stitching record of block ``index``."""

    @abstractmethod
    def discard(self, index: int) -> None:
        """Forget block ``index``: it no longer counts as finished."""


class MemoryBlockStore(BlockStore):
    """Blocks kept in memory, for results returned as an array (nothing to resume)."""

    def __init__(self) -> None:
        self._labels: dict[int, np.ndarray] = {}
        self._records: dict[int, BlockRecord] = {}

    def finished(self) -> set[int]:
        return set(self._records)

    def save(self, index: int, labels: np.ndarray, record: BlockRecord) -> None:
        self._labels[index] = labels
        self._records[index] = record

    def labels(self, index: int) -> np.ndarray:
        return self._labels[index]

    def record(self, index: int) -> BlockRecord:
        return self._records[index]

    def discard(self, index: int) -> None:
        del self._labels[index], self._records[index]


class DirectoryBlockStore(BlockStore):
    """Blocks stored as ``<index>.npy`` + ``<index>.json`` files in a work directory.

    Each file is written under a temporary name and renamed, and the record is written last, so a block
    counts as finished only when both are complete: a run (or a worker) killed at any point loses at most the
    blocks it was working on. Processes on several machines may save blocks into one directory on a shared file
    system; the store pickles as its path (what a dask task needs to find it). ``run.json`` holds the settings of
    the run (``fingerprint``); a directory left by a run with other settings is never reused by mistake.

    Args:
        directory: the work directory (created if missing).
        fingerprint: JSON-serialisable description of everything that determines the block results.
        discard_mismatch: remove a work directory with another fingerprint instead of raising.

    Raises:
        ValueError: if ``directory`` belongs to a run with a different fingerprint and
            ``discard_mismatch`` is False.
    """

    def __init__(self, directory: str | os.PathLike, fingerprint: dict[str, Any], discard_mismatch: bool = False):
        self.directory = Path(directory)
        manifest = self.directory / "run.json"
        fingerprint = json.loads(json.dumps(fingerprint))
        if manifest.exists():
            stored = json.loads(manifest.read_text())
            if stored != fingerprint:
                if not discard_mismatch:
                    differing = sorted(k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k))
                    raise ValueError(
                        f"the work directory {self.directory} holds an unfinished run with other settings "
                        f"(differing: {', '.join(differing)}); remove it, or pass overwrite=True to discard it."
                    )
                self.remove()
        if not manifest.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            with write_atomically(manifest) as temporary:
                temporary.write_text(json.dumps(fingerprint, indent=1))

    def finished(self) -> set[int]:
        return {int(path.stem) for path in self.directory.glob("[0-9]*.json")}

    def save(self, index: int, labels: np.ndarray, record: BlockRecord) -> None:
        labels = np.ascontiguousarray(labels, dtype=np.uint32)
        with write_atomically(self._path(index, ".npy")) as temporary, open(temporary, "wb") as handle:
            # the values go through the file's own write, whose error says why it failed (numpy's says only how
            # many bytes were written)
            np.lib.format.write_array_header_1_0(handle, np.lib.format.header_data_from_array_1_0(labels))
            handle.write(labels.data)
        payload = {
            "num_core_labels": int(record.num_core_labels),
            "num_labels": int(record.num_labels),
            "input_digest": record.input_digest,
        }
        with write_atomically(self._path(index, ".json")) as temporary:
            temporary.write_text(json.dumps(payload))

    def labels(self, index: int) -> np.ndarray:
        return np.load(self._path(index, ".npy"), mmap_mode="r")

    def record(self, index: int) -> BlockRecord:
        payload = json.loads(self._path(index, ".json").read_text())
        return BlockRecord(payload["num_core_labels"], payload["num_labels"], payload.get("input_digest"))

    def discard(self, index: int) -> None:
        # the record first: without it the block is unfinished, whatever happens to its labels after
        self._path(index, ".json").unlink()
        self._path(index, ".npy").unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the work directory."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def _path(self, index: int, suffix: str) -> Path:
        return self.directory / f"{index:07d}{suffix}"

