"""Logging configuration for the command line (library modules only ever call `logging.getLogger`)."""

from __future__ import annotations

import logging
import sys


class OncePerCommand(logging.Filter):
    """Lets each distinct message (logger, level, text) through once: a command that builds a model
    three times, or meets the same condition in every clip, says so once."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def configure_logging(*, quiet: bool = False, verbose: bool = False) -> None:
    """Send log records to stderr with a short format; `quiet` keeps warnings and errors only.

    Called once at the start of every command; repeated identical messages are dropped (`OncePerCommand`).
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(OncePerCommand())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party libraries are chatty at INFO.
    for name in ("matplotlib", "PIL", "urllib3", "jieba", "numba", "h5py", "filelock", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
