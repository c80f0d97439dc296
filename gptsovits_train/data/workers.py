"""The worker processes of `prepare` and how a run stops on SIGINT/SIGTERM.

- **Stopping.** While `stop_on_signals()` is active (the whole of `prepare()`), SIGINT (Ctrl-C) and
  SIGTERM (what `timeout`, `docker stop`, systemd and Slurm send, often to the whole process group)
  raise `StopRequested` in the main thread. `prepare` then kills its pool workers, keeps every
  finished source (their progress records are on disk) and raises `Interrupted`, which the CLI prints
  as one line saying that rerunning the same command resumes; the exit code is 128 + the signal
  number (130 for SIGINT, 143 for SIGTERM; `interruptible`). Workers ignore both signals, so a
  signal sent to the process group is handled once, by the main process.
- **Orphans.** A worker must not outlive its parent (e.g. after `kill -9` of `prepare`): on Linux
  each worker asks the kernel for SIGKILL when its parent dies (`prctl(PR_SET_PDEATHSIG)`); where
  that is not available a watchdog thread exits the worker once its parent pid changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from types import FrameType
from typing import ParamSpec, TypeVar

from gptsovits_train.errors import Interrupted

LOG = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_PR_SET_PDEATHSIG = 1
#: Seconds between two parent checks of the watchdog (only where PR_SET_PDEATHSIG is unavailable).
WATCHDOG_INTERVAL = 0.5


class StopRequested(BaseException):
    """SIGINT/SIGTERM arrived while `stop_on_signals` was active; `detail` may say what was kept."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.detail = ""

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise `StopRequested` (once; later ones are ignored while stopping).

    Outside the main thread (where handlers cannot be set) this does nothing, and Ctrl-C stays a
    `KeyboardInterrupt`.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = False

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise StopRequested(signum)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interruptible(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: run under `stop_on_signals`; a stop (or Ctrl-C) becomes `Interrupted` whose message
    says that the finished work is kept and that the same command resumes (exit code 128 + signal)."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                with stop_on_signals():
                    return fn(*args, **kwargs)
            except StopRequested as stop:
                name, code, detail = stop.name, 128 + stop.signum, stop.detail
            except KeyboardInterrupt:
                name, code, detail = "SIGINT", 128 + int(signal.SIGINT), ""
            detail = f" ({detail})" if detail else ""
            raise Interrupted(
                f"{what} stopped by {name}{detail}: finished work is kept; "
                "run the same command again to resume",
                code,
            ) from None

        return run

    return wrap


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(WATCHDOG_INTERVAL)
        if os.getppid() != parent_pid:
            os._exit(1)


def die_with_parent(parent_pid: int) -> str:
    """Make this (child) process exit when `parent_pid` dies; returns the mechanism used."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            ok = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            ok = False
        if ok:
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)
            return "prctl"
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watchdog", daemon=True).start()
    return "watchdog"


#: glibc `mallopt` parameters and the values `keep_freed_memory` sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest: blocks below it come from the heap
TRIM_THRESHOLD_BYTES = 256 << 20  # freed heap kept for reuse, up to this much


def keep_freed_memory() -> bool:
    """Let this process reuse the memory it frees instead of giving it back to the system at once.

    glibc hands blocks from 128 KB up (its default threshold, raised as it goes) to `mmap` and returns
    them on `free`, and it trims freed heap memory above 128 KB: every decode block, resampler output and
    segment buffer of `prepare` then comes back as fresh pages, each one zeroed by the kernel on first
    touch. With two workers on one long file that was a fifth of their CPU time (kernel page faults,
    measured with perf); keeping blocks below 32 MB on the heap and up to 256 MB of freed heap for reuse
    removes it (docs/benchmarks.md). Peak memory is unchanged: only what was already in use is kept.
    Returns False where there is no glibc `mallopt` (other C libraries, macOS, Windows): nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        LOG.debug("no mallopt in this C library: freed memory goes back to the system at once")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


def release_free_memory() -> bool:
    """Give the free parts of this process's heap back to the system (glibc `malloc_trim`); False where
    there is no glibc (nothing happens)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


def worker_init(parent_pid: int, with_torch: bool) -> None:
    """Initializer of every pool worker: signals left to the parent, exit with it, one torch thread,
    freed memory kept for reuse."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(parent_pid)
    keep_freed_memory()
    if with_torch:
        import torch

        torch.set_num_threads(1)  # one process per core


def kill_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool at once: kill its workers (they ignore SIGINT/SIGTERM) and drop queued work."""
    processes = dict(getattr(pool, "_processes", None) or {})  # the executor keeps no public list
    for proc in processes.values():
        with contextlib.suppress(OSError, ValueError):
            proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes.values():
        with contextlib.suppress(OSError, ValueError, AssertionError):
            proc.join(timeout=10)
