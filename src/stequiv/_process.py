"""Worker processes that stop when the process that started them dies.

``stequiv reproduce`` and ``stequiv study`` train in spawned worker processes
(:class:`~concurrent.futures.ProcessPoolExecutor`). When their parent is killed (SIGKILL, or a
SIGTERM that skips Python's clean-up, as a batch scheduler's time limit does), the workers are
re-parented to init and go on training a batch nobody will collect, holding cores and memory for
minutes. :func:`die_with_parent`, called first in each worker, asks the Linux kernel to send the
worker SIGKILL the moment its parent exits (``prctl(PR_SET_PDEATHSIG)``), and exits at once if the
parent is already gone. Workers write nothing themselves (their results travel back to the parent,
which writes them), so nothing is left half-written. Elsewhere than Linux it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> bool:
    """Have this process killed when ``parent`` (the pid that started it) exits; True if set.

    Exits this process at once if its parent is no longer ``parent`` (it died between the spawn
    and this call)."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:
        os._exit(1)
    return True
