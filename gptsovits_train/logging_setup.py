"""Logging configuration for the command line (library modules only ever call `logging.getLogger`)."""

from __future__ import annotations

import logging
import sys


def configure_logging(*, quiet: bool = False, verbose: bool = False) -> None:
    """Send log records to stderr with a short format; `quiet` keeps warnings and errors only."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party libraries are chatty at INFO.
    for name in ("matplotlib", "PIL", "urllib3", "jieba", "numba", "h5py", "filelock", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
