"""Fixtures shared by the test folders."""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Callable

import pytest


class FullFile(io.FileIO):
    """A file on a disk with ``free`` bytes left: the write that needs more fails with ENOSPC, as on a full disk."""

    def __init__(self, path: str | os.PathLike, mode: str, free: int) -> None:
        super().__init__(path, mode)
        self.free = free

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if size > self.free:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.free -= size
        return super().write(data)


@pytest.fixture
def full_disk() -> Callable[[int], Callable[..., io.IOBase]]:
    """``full_disk(free)``: an ``open`` of binary files on a disk with ``free`` bytes left for each file.

    Monkeypatch a module's ``open`` with it to have that module's writes meet a full disk.
    """

    def opener(free: int) -> Callable[..., io.IOBase]:
        def open_binary(path: str | os.PathLike, mode: str = "rb", buffering: int = -1) -> io.IOBase:
            raw = FullFile(path, mode.replace("b", ""), free)
            if buffering == 0:
                return raw
            return io.BufferedRandom(raw) if "+" in mode else io.BufferedWriter(raw)

        return open_binary

    return opener
