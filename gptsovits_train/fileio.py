"""Atomic file writes: every file is written to a temporary name in the same folder, then renamed.

A reader never sees a half-written file, and a crash leaves at most a stray `*.tmp-*` file that the
next write of the same name replaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np


@contextlib.contextmanager
def atomic_path(target: Path | str, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is fsynced and renamed onto `target`.

    On any exception the temporary file is removed and `target` is left untouched. `fsync=False` skips
    the flush to disk (still atomic against process crashes; for many small re-creatable files).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
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
    """Save one array as `.npy` (never pickled; load it with `np.load(path, allow_pickle=False)`)."""
    return atomic_write_with(target, lambda fh: np.save(fh, array, allow_pickle=False), fsync=fsync)


def atomic_torch_save(target: Path | str, obj: Any) -> Path:
    """`torch.save` through a temporary file."""
    import torch

    return atomic_write_with(target, lambda fh: torch.save(obj, fh))
