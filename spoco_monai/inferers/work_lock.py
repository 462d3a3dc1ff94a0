"""An exclusive lock on the work directory of a whole-volume run, so two runs never write one output."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

__all__ = ["WorkDirectoryLock", "WorkDirectoryLockedError"]


class WorkDirectoryLockedError(RuntimeError):
    """Another process holds the lock of the work directory."""


class WorkDirectoryLock:
    """An exclusive, non-blocking ``fcntl`` lock on ``<work directory>.lock``, taken at construction.

    The kernel releases the lock when its process ends, however it ends (``kill -9`` included), so a killed run
    never blocks its own resumption; a file left behind holds no lock. The lock is advisory and POSIX-only.
    Within one process the lock is re-entrant (a caller may take it early, e.g. before reading a whole input, and
    the run it starts takes it again); it is released when every holder has released it.

    Args:
        work: the work directory the lock protects (it need not exist; the folder that holds it is created).

    Raises:
        WorkDirectoryLockedError: another process holds the lock; the message names it and the output.
    """

    # lock files held by this process -> [open file, number of holders]
    _held: dict[Path, list] = {}

    def __init__(self, work: str | os.PathLike) -> None:
        self.path = Path(f"{os.fspath(work)}.lock").absolute()
        self._released = False
        if self.path in self._held:
            self._held[self.path][1] += 1
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise WorkDirectoryLockedError(
                f"another run ({holder}) is writing this output: its work directory {work} is locked by {self.path}; "
                "wait for it to finish or choose another output."
            ) from None
        self._file.truncate(0)
        self._file.write(f"pid {os.getpid()} on {socket.gethostname()}")
        self._file.flush()
        self._held[self.path] = [self._file, 1]

    def release(self) -> None:
        """Remove the lock file and release the lock (in this order, so no other process locks a removed file)."""
        if self._released:
            return
        self._released = True
        held = self._held[self.path]
        held[1] -= 1
        if held[1] == 0:
            del self._held[self.path]
            self.path.unlink(missing_ok=True)
            held[0].close()
