"""Atomic file writes: every file is written to a temporary name in the same folder, then renamed.

A reader never sees a half-written file, and a crash leaves at most a stray `*.tmp-*` file that the
next write of the same name replaces. A file gets the permissions a plain `open()` would give it under
the current umask (`0o666 & ~umask`), not the 0600 of a private temporary file.

A full disk, an exceeded quota, a read-only file system or a folder without write permission raises
`OutputWriteError` (a `GsvError`, so the CLI prints it as one line) naming the cause and the folder;
the target is then left as it was (the old file, or none), never truncated.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from gptsovits_train.errors import GsvError

#: errno values that mean "this folder cannot take the file" (not a bug, not bad input).
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})

LOG = logging.getLogger(__name__)
_UMASK_LOCK = threading.Lock()


class OutputWriteError(GsvError):
    """A file could not be written because of its folder or device (full, read-only, no permission)."""


def write_failure(exc: OSError, path: Path | str) -> str | None:
    """One line naming why writing `path` failed, or None when `exc` is not a disk/permission problem."""
    folder = Path(os.fsdecode(exc.filename)).parent if exc.filename else Path(path).parent
    if exc.errno in _NO_SPACE:
        what = "quota exceeded" if exc.errno == errno.EDQUOT else "no space left"
        return f"{what} on the device holding {folder.absolute()} (while writing {Path(path).name})"
    if exc.errno in _NOT_WRITABLE:
        why = "is on a read-only file system" if exc.errno == errno.EROFS else "is not writable"
        return f"folder {folder.absolute()} {why} (while writing {Path(path).name})"
    return None


def output_failure(exc: OSError, root: Path | str) -> str | None:
    """`write_failure` for an error about a path inside the output folder `root` (else None: an error
    about some other path, e.g. an input, is not an output problem)."""
    if not exc.filename:
        return None
    where = Path(os.fsdecode(exc.filename)).absolute()
    base = Path(root).absolute()
    if where != base and base not in where.parents:
        return None
    return write_failure(exc, where)


@contextlib.contextmanager
def naming_write_failures(path: Path | str) -> Iterator[None]:
    """Turn a disk/permission `OSError` raised inside the block into `OutputWriteError` (see
    `write_failure`); any other error passes unchanged."""
    try:
        yield
    except OSError as exc:
        message = write_failure(exc, path)
        if message is None:
            raise
        raise OutputWriteError(message) from exc


def current_umask() -> int:
    """The process umask: from /proc on Linux, else by setting and restoring it (under a lock)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass  # not Linux (or no /proc): fall back to the set-and-restore below
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _make_temp(target: Path) -> Path:
    """Create an empty temporary file beside `target` with plain-`open()` permissions."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    except OSError as exc:  # a file system without modes (some network/FUSE mounts): keep what it gave
        LOG.debug("cannot set the mode of %s (%s); keeping the file system's", name, exc)
    finally:
        os.close(fd)
    return Path(name)


def _commit(tmp: Path, target: Path, fsync: bool) -> None:
    """Flush `tmp` to disk (optionally) and rename it onto `target`."""
    if fsync:
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, target)


@contextlib.contextmanager
def atomic_path(target: Path | str, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is fsynced and renamed onto `target`.

    On any exception the temporary file is removed and `target` is left untouched. `fsync=False` skips
    the flush to disk (still atomic against process crashes; for many small re-creatable files).
    A disk/permission failure (also one raised by the caller's writing) becomes `OutputWriteError`.
    """
    target = Path(target)
    tmp: Path | None = None
    try:
        with naming_write_failures(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = _make_temp(target)
            yield tmp
            _commit(tmp, target, fsync)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_with(target: Path | str, writer: Callable[[IO[bytes]], None], *, fsync: bool = True) -> Path:
    """Call `writer(binary_file)` on a temporary file and rename it onto `target`."""
    target = Path(target)
    with atomic_path(target, fsync=fsync) as tmp, open(tmp, "wb") as fh:
        writer(fh)
    return target


def atomic_write_bytes(target: Path | str, data: bytes, *, fsync: bool = True) -> Path:
    def write(fh: IO[bytes]) -> None:
        fh.write(data)

    return atomic_write_with(target, write, fsync=fsync)


def atomic_write_text(target: Path | str, text: str) -> Path:
    return atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: Path | str, obj: Any) -> Path:
    return atomic_write_text(target, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_save_npy(target: Path | str, array: np.ndarray, *, fsync: bool = True) -> Path:
    """Save one array as `.npy` (never pickled; load it with `np.load(path, allow_pickle=False)`).

    The array is serialised in memory first: numpy's direct file write reports a short write on a full
    disk without an errno, a plain `write()` reports ENOSPC.
    """
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return atomic_write_bytes(target, buf.getvalue(), fsync=fsync)


def atomic_torch_save(target: Path | str, obj: Any) -> Path:
    """`torch.save` through a temporary file."""
    import torch

    return atomic_write_with(target, lambda fh: torch.save(obj, fh))
