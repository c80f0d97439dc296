"""Where a run stands: epoch, step, batches done in the epoch, running loss sums, elapsed time, resumes.

`RunState` is the position a checkpoint stores and a resume continues from. Its `state_dict()` is the
checkpoint's `epoch`, `step`, `metrics` and `progress` entries (the layout of format version 1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunState:
    """The position of a run.

    `epoch` is the epoch being trained; `batches_done` the batches of it already trained (0 at its start).
    `epoch_sums` holds the sums of the finite steps' values of this epoch (`n`: their count).
    """

    epoch: int = 1
    step: int = 0
    batches_done: int = 0
    epoch_sums: dict[str, float] = field(default_factory=dict)
    epochs_completed: int = 0
    elapsed_before: float = 0.0  # seconds spent by earlier sessions of this run (before the last resume)
    resumes: int = 0
    last_metrics: dict[str, float] = field(default_factory=dict)  # the latest epoch's means + validation
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        """Seconds the whole run has trained, over every session."""
        return self.elapsed_before + (time.monotonic() - self.started)

    def add_step(self, values: dict[str, float]) -> None:
        """Count one finite step into the epoch's running sums."""
        for key, value in values.items():
            self.epoch_sums[key] = self.epoch_sums.get(key, 0.0) + value
        self.epoch_sums["n"] = self.epoch_sums.get("n", 0.0) + 1

    def train_means(self) -> dict[str, float]:
        """Epoch means of the losses so far: `loss/x` -> `train/x`."""
        n = max(self.epoch_sums.get("n", 0.0), 1.0)
        return {
            f"train/{k.split('/', 1)[1]}": v / n for k, v in self.epoch_sums.items() if k.startswith("loss/")
        }

    def end_epoch(self, *, finished: bool) -> None:
        """After the epoch's checkpoint position is decided: a finished epoch starts the next one afresh."""
        self.epochs_completed = self.epoch if finished else self.epoch - 1
        if finished:
            self.epoch, self.batches_done, self.epoch_sums = self.epoch + 1, 0, {}

    # --------------------------------------------------------------------------------------------- state
    def state_dict(self, *, epoch: int, finished: bool) -> dict[str, Any]:
        """The checkpoint entries of this position; `epoch` is the epoch the checkpoint is named after."""
        return {
            "epoch": epoch,
            "step": self.step,
            "metrics": dict(self.last_metrics),
            "progress": {
                "epoch_finished": finished,
                "batches_done": 0 if finished else self.batches_done,
                "epoch_sums": {} if finished else dict(self.epoch_sums),
                "elapsed_s": self.elapsed,
                "resumes": self.resumes,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: the next epoch, or the same one at its next batch; one more resume."""
        prog = state["progress"]
        self.step = int(state["step"])
        if prog["epoch_finished"]:
            self.epoch, self.batches_done, self.epoch_sums = int(state["epoch"]) + 1, 0, {}
        else:
            self.epoch, self.batches_done = int(state["epoch"]), int(prog["batches_done"])
            self.epoch_sums = {k: float(v) for k, v in prog["epoch_sums"].items()}
        self.epochs_completed = self.epoch - 1
        self.elapsed_before, self.resumes = float(prog["elapsed_s"]), int(prog["resumes"]) + 1
        self.last_metrics = dict(state.get("metrics") or {})
