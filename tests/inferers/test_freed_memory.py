import ctypes
import ctypes.util
from pathlib import Path

import pytest

from spoco_monai.inferers.freed_memory import release_freed_memory

CHUNK = 100 * 1024  # below glibc's mmap threshold: served from the heap
COUNT = 400


def _resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def test_release_freed_memory_returns_freed_heap_pages_and_keeps_live_ones():
    name = ctypes.util.find_library("c")
    if name is None or not Path("/proc/self/statm").exists() or not hasattr(ctypes.CDLL(name), "malloc_trim"):
        pytest.skip("needs glibc and /proc (Linux): elsewhere release_freed_memory is a documented no-op")
    libc = ctypes.CDLL(name)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    chunks = [libc.malloc(CHUNK) for _ in range(COUNT)]
    for chunk in chunks:
        ctypes.memset(chunk, 1, CHUNK)
    last = chunks.pop()  # still in use at the top of the heap: free() alone cannot shrink the heap
    for chunk in chunks:
        libc.free(chunk)
    before = _resident_bytes()
    assert release_freed_memory()
    released = before - _resident_bytes()
    assert released > COUNT * CHUNK // 2
    assert ctypes.string_at(last, 4) == b"\x01" * 4  # the live chunk is untouched
    libc.free(last)
