"""Ctrl-C and SIGTERM during a run: stop after the current step, keep everything, end the run normally.

`StopSignals` is installed for the whole run, the end included (reload best, final validation, summary):

- the first SIGINT or SIGTERM only sets `requested`; the loop finishes the step, saves `last.pt`, reloads
  the best weights and writes the summary. The command then exits with 128 + the signal number (130 for
  SIGINT, 143 for SIGTERM);
- a second SIGINT aborts at once (`KeyboardInterrupt`), a second SIGTERM is only logged;
- a signal that arrives while the run is already ending (after early stopping, say) is noted and the end of
  the run goes on.

What `timeout`, `docker stop`, systemd and Slurm send goes to the whole process group, DataLoader workers
included. Workers therefore ignore SIGINT and SIGTERM (`ignore_stop_signals`, their `worker_init_fn`): the
main process stops them when it is done with them, and they exit by themselves if it dies.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

LOG = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """SIGINT/SIGTERM ask the run to stop after the current step (a second SIGINT aborts at once)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.ending = False  # the run is past its loop: a signal no longer changes how it ends
        self._previous: dict[int, Any] = {}

    def install(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # handlers need the main thread
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            LOG.warning("%s received again: already stopping (Ctrl-C aborts at once)", name)
            return
        self.signum = signum
        if self.ending:
            LOG.warning("%s received: the run is already ending; finishing it (Ctrl-C again aborts)", name)
            return
        LOG.warning(
            "%s received: stopping after this step, saving last.pt, then reloading the best weights "
            "(Ctrl-C again to abort at once)",
            name,
        )

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "signal"

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """`worker_init_fn` of DataLoader workers: SIGINT/SIGTERM to the process group are the main process's."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
