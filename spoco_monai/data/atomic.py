"""Atomic replacement of a file or folder: readers see the old content or the complete new one, never a part."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .disk_errors import naming_path

__all__ = ["write_atomically", "replace_path", "remove_path", "remove_after_failure", "PARTIAL_PREFIX"]

PARTIAL_PREFIX = ".partial-"


@contextmanager
def write_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; when the block ends without error, it replaces ``path``.

    The temporary ``.partial-<name>`` lies in the folder of ``path``, because ``os.replace`` is atomic only within
    one file system; one left over by an interrupted writer is removed first. A file is flushed to disk before
    the rename, so that a crash leaves the previous file rather than an empty one. A folder (e.g. a zarr store)
    cannot replace another in one step: the old folder is moved aside, the new one renamed, then the old one
    deleted. On error the temporary is removed and ``path`` keeps its content. Writers of the same path share the
    temporary name, so concurrent ones must hold a lock.

    Example::

        with write_atomically("datalist.json") as temporary:
            temporary.write_text(json.dumps(datalist))

    Args:
        path: the file or folder to (re)place; its folder must exist.

    Raises:
        OSError: from the block, or from flushing or renaming the file; one that names no path (a failed write)
            names ``path``.
    """
    target = Path(path)
    temporary = target.with_name(PARTIAL_PREFIX + target.name)
    remove_path(temporary)
    try:
        # a failed write (a full disk) names no path: name the file it was for
        with naming_path(target):
            yield temporary
            if temporary.is_file():
                descriptor = os.open(temporary, os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
        replace_path(temporary, target)
    except BaseException:
        remove_after_failure(temporary)
        raise


def replace_path(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` (same folder); a folder ``target`` is moved aside, replaced, then deleted."""
    if target.is_dir() and not target.is_symlink():
        retired = target.with_name(PARTIAL_PREFIX + "old-" + target.name)
        remove_path(retired)
        os.replace(target, retired)
        os.replace(source, target)
        remove_path(retired)
    else:
        os.replace(source, target)


def remove_path(path: Path) -> None:
    """Delete a file, link or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def remove_after_failure(path: Path) -> None:
    """Delete what a failed writer left at ``path`` as far as it goes, never raising.

    It runs while the failure propagates, which an error of its own would hide: e.g. the threads of a failed zarr
    write may still be adding chunks to the folder being deleted. Whatever is left is a temporary, removed before
    the next write to it.
    """
    with suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
