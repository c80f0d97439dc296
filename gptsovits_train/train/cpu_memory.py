"""Keep freed memory inside the process during CPU training (glibc malloc tuning).

PyTorch's CPU allocator does not cache: every activation of every step is `malloc`ed and `free`d. glibc
hands large blocks back to the operating system at once (mmap threshold, heap trimming), so the next step
page-faults the same amount of memory in again. On virtual machines where a page fault is expensive this
dominates CPU training (measured on the 2-core development VM: the first steps of a tiny run took 5-30 s
instead of 0.3 s). Raising the mmap threshold to its maximum and making trimming rare keeps that memory in
the process; the resident size then stays at the run's peak, which training needs anyway.

Only glibc is tuned (Linux); elsewhere nothing happens. GPU runs are unaffected (CUDA has its own caching
allocator).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys

LOG = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

_MMAP_THRESHOLD = 32 * 2**20  # glibc's maximum on 64-bit (HEAP_MAX_SIZE / 2)
_TRIM_THRESHOLD = 2**31 - 1  # (int maximum) give the top of the heap back only beyond 2 GiB
_TOP_PAD = 256 * 2**20  # grow the heap in large steps


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc malloc for training; return True when it was applied (once per process)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        LOG.debug("no C library found: malloc not tuned")
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError) as exc:  # not glibc (e.g. musl): nothing to tune
        LOG.debug("malloc tuning unavailable (%s)", exc)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = all(
        mallopt(param, value) == 1
        for param, value in (
            (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD),
            (_M_TOP_PAD, _TOP_PAD),
        )
    )
    if ok:
        LOG.debug("glibc malloc tuned for training (mmap threshold 32 MiB, no trimming)")
    else:
        LOG.debug("mallopt refused a setting: malloc only partly tuned")
    return ok


def cpu_threads(
    configured: int | None, num_workers: int, world_size: int, *, cores: int | None = None
) -> int | None:
    """torch intra-op threads for one CPU training process, or None to leave torch's choice alone.

    `configured` (train.cpu_threads) wins; else an explicit OMP_NUM_THREADS is respected (None); else the
    cores are shared out: cores // processes, minus this process's DataLoader workers, at least 1.
    """
    if configured is not None:
        return configured
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    total = cores if cores is not None else (os.cpu_count() or 1)
    return max(1, total // max(1, world_size) - num_workers)
