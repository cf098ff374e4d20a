"""Giving the memory of written batches back to the system (glibc's allocator keeps it otherwise).

A burst of large payloads is freed once its batch is written, but glibc keeps freed heap memory for
reuse (and raises its mmap threshold after large frees, so that later large payloads come from the
heap too): a worker that took 300 MB of bad payloads stayed near that size afterwards. After enough
has been freed, and when the writer is idle, `malloc_trim(0)` returns it; it costs about a
millisecond, so it runs at most once a second. Without glibc (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable
from typing import Final

TRIM_AFTER_BYTES: Final = 8 * 2**20
MIN_INTERVAL_S: Final = 1.0


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class Releaser:
    """Counts what the writer freed and trims the allocator now and then."""

    def __init__(self) -> None:
        self._trim = _malloc_trim()
        self._freed = 0
        self._last = 0.0

    def freed(self, nbytes: int, *, idle: bool = False) -> None:
        """`nbytes` were released; `idle` when nothing waits to be written."""
        self._freed += nbytes
        if self._trim is None or self._freed == 0:
            return
        now = time.monotonic()
        if now - self._last < MIN_INTERVAL_S or (self._freed < TRIM_AFTER_BYTES and not idle):
            return
        self._trim(0)
        self._freed, self._last = 0, now
