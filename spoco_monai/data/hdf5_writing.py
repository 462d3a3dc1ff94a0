"""HDF5 files written so that they always close completely: a failed write (a full disk) raises, never crashes."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import h5py

__all__ = ["open_hdf5_for_writing"]


@contextmanager
def open_hdf5_for_writing(path: str | os.PathLike, mode: str) -> Iterator[h5py.File]:
    """``h5py.File(path, mode)`` that is closed completely however writing it fails, then raises the failure.

    HDF5 writes cached chunks and metadata when an object or the file closes, also when Python deletes a dataset
    object. When such a write fails (a full disk, a quota), HDF5 cannot close the object, and the process crashes
    with a segmentation fault (h5py issue #914). The file is therefore written through a Python file object (h5py's
    ``fileobj`` driver) that never reports a failed write to HDF5: it records the first one and takes every later
    write without writing it. Once the file is closed, the recorded failure is raised, in place of any error of
    the block (which follows from it, e.g. a chunk read back that was never written).

    Args:
        path: the HDF5 file.
        mode: ``"w"`` to create (or truncate) it, ``"r+"`` to change an existing file.

    Yields:
        the open file. After a failed write, the file's content is incomplete.

    Raises:
        OSError: the first failed write (e.g. errno ``ENOSPC``), once the file is closed; also from opening ``path``.
        ValueError: for another mode.
    """
    if mode not in ("w", "r+"):
        raise ValueError(f"mode must be 'w' or 'r+', got {mode!r}.")
    raw = open(path, "w+b" if mode == "w" else "r+b", buffering=0)
    recording = _FailureRecordingFile(raw)
    try:
        handle = h5py.File(recording, mode)
    except BaseException:
        raw.close()
        raise
    try:
        yield handle
    finally:
        handle.close()
        raw.close()
        if recording.failure is not None:
            raise recording.failure


class _FailureRecordingFile(io.RawIOBase):
    """A binary file whose failed writes are recorded, not raised: the first one, after which nothing is written.

    Attributes:
        failure: the first failed write or truncation, ``None`` while every one succeeded.
    """

    def __init__(self, raw: io.FileIO) -> None:
        super().__init__()
        self._raw = raw
        self.failure: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        return self._raw.readinto(buffer)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data).cast("B")
        self._unless_failed(self._write_all, view)
        return view.nbytes

    def truncate(self, size: int | None = None) -> int:
        self._unless_failed(self._raw.truncate, size)
        return self.tell() if size is None else size

    def flush(self) -> None:
        if self.failure is None and not self._raw.closed:
            self._raw.flush()

    def _write_all(self, view: memoryview) -> None:
        while view:  # a raw write may write part of the data (a nearly full disk)
            view = view[self._raw.write(view) :]

    def _unless_failed(self, operation: Callable[[Any], Any], argument: Any) -> None:
        if self.failure is not None:
            return
        try:
            operation(argument)
        except OSError as error:
            self.failure = error
