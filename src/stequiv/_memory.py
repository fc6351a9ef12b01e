"""Keep freed memory in the process instead of handing it back to the kernel after every step.

glibc's ``malloc`` serves a block above its mmap threshold (128 KiB, raised as blocks are freed,
at most 32 MiB) with a fresh ``mmap`` and returns it with ``munmap`` when the tensor dies; the heap
above its trim threshold is returned too. A training step frees and reallocates the same
activations and gradients every time, so each step faulted its pages in again, zero-filled by the
kernel: 14 million minor page faults and 29 s of system time of the 230 CPU seconds of
``stequiv reproduce --quick`` (0.37 million and 1.7 s with this setting).
:func:`keep_freed_memory` raises both thresholds to 1 GiB, so the next step reuses the pages of
the last one: the faults and nearly all of that system time go, and no number changes (only
where the bytes live).

The setting is process-wide and stays, so stequiv applies it only in processes it owns: its
command line and the worker processes it spawns, never in a caller's own process. Elsewhere than
glibc (macOS, musl) there is no ``mallopt`` to call and the allocator is left as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # glibc's <malloc.h> parameter numbers
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # bytes: far above any one tensor of the experiments


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to 1 GiB in this process; False where the C library
    is not glibc (nothing is changed there)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)
                and libc.mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
