"""Hand memory freed by a finished block back to the operating system (glibc), so it does not pile up."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to trim
        return None


def release_freed_memory() -> bool:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim(0)``); a no-op elsewhere.

    The per-window arrays of a block (network activations, window affinities) are mostly a few MiB each, below
    glibc's threshold for separate memory maps, so they come from the heap; once freed, their pages stay with
    the process, scattered between live allocations, and the resident memory of a long run creeps up block
    after block. Trimming after every block keeps the peak at what one block needs (about 100 MiB less on a
    256^3 volume with 96x96x48 blocks, see ``bench/volume.py``), for a millisecond or so per call.

    Returns:
        True if the C library offers ``malloc_trim`` (it was called), False otherwise.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
