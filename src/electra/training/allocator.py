"""Host allocator settings for training: keep big buffers in the heap instead of mmap/munmap every step.

glibc serves large allocations (activations, gradients, the Gumbel noise) with ``mmap`` and returns them with
``munmap`` on free, so every training step faults all of that memory in again: the plain transformers step
spends 17-24% of its time in the kernel on page faults. Raising the mmap and trim thresholds — what the
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` environment variables do at start-up — keeps freed
blocks for reuse. ``tune_malloc`` sets the same values at run time through ``mallopt`` (no re-exec needed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

MMAP_THRESHOLD = 1 << 30  # bytes; allocations below it come from the heap
TRIM_THRESHOLD = 1 << 31  # bytes of free heap top kept instead of returned to the system
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers


def tune_malloc() -> bool:
    """Apply the thresholds on glibc (Linux); a no-op returning False elsewhere or when refused."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
