"""Operating-system errors on paths, told in one line: which path, and what went wrong there."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["DISK_FULL", "describe_os_error", "naming_path"]

# the errors a full disk or quota gives
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

# the errors met writing results, in the words of their cause
_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
}


def describe_os_error(error: OSError) -> str:
    """One line for ``error``: ``"<path>: <cause>."`` when it names a path, its own message otherwise.

    Example::

        >>> describe_os_error(OSError(errno.ENOSPC, "No space left on device", "/data/labels.zarr"))
        '/data/labels.zarr: no space left on the device.'

    Args:
        error: any ``OSError``; one raised with a message only (e.g. ``FileExistsError("... exists")``) is told by
            that message.

    Returns:
        the line, without line breaks (HDF5's messages hold some).
    """
    if error.errno is not None and error.filename is not None:
        cause = _CAUSES.get(error.errno, (error.strerror or os.strerror(error.errno)).lower())
        return f"{os.fsdecode(error.filename)}: {cause}."
    return " ".join(str(error).split())


@contextmanager
def naming_path(path: str | os.PathLike) -> Iterator[None]:
    """Raise an ``OSError`` of the block that names no path (a failed write names none) as one naming ``path``.

    The error keeps its number, so its class (``PermissionError``, ...) and its cause; it is chained to the original.

    Args:
        path: what the block writes, as the error should name it.
    """
    try:
        yield
    except OSError as error:
        if error.errno is None or error.filename is not None:
            raise
        raise OSError(error.errno, os.strerror(error.errno), os.fspath(path)) from error
