"""The NaN/Inf guard: skip bad steps, and after `patience` bad steps in a row ask for a rollback.

A step is bad when a loss or a gradient norm is NaN/Inf (with an fp16 grad scaler, inf gradients are the
scaler's normal overflow handling and are not counted; a non-finite loss still is). The loop skips the
optimizer update of a bad step; when `patience` bad steps come in a row, it reloads the last good
checkpoint and lowers the learning rate (`lr_factor`). After `max_rollbacks` rollbacks the run gives up.
"""

from __future__ import annotations

import logging
from typing import Any

LOG = logging.getLogger(__name__)


class NanGuard:
    """Counts non-finite steps.

    Args:
        patience: bad steps in a row that trigger a rollback (>= 1).
        max_rollbacks: rollbacks allowed before `record` reports that the run must stop.
    """

    def __init__(self, patience: int = 3, max_rollbacks: int = 5) -> None:
        if patience < 1 or max_rollbacks < 0:
            raise ValueError("need patience >= 1 and max_rollbacks >= 0")
        self.patience = patience
        self.max_rollbacks = max_rollbacks
        self.streak = 0
        self.skipped_steps = 0
        self.rollbacks = 0

    def record(self, ok: bool) -> str:
        """Record one step; return "ok", "skip", "rollback" or "give_up"."""
        if ok:
            self.streak = 0
            return "ok"
        self.streak += 1
        self.skipped_steps += 1
        if self.streak < self.patience:
            return "skip"
        self.streak = 0
        if self.rollbacks >= self.max_rollbacks:
            return "give_up"
        self.rollbacks += 1
        return "rollback"

    def state_dict(self) -> dict[str, Any]:
        return {"streak": self.streak, "skipped_steps": self.skipped_steps, "rollbacks": self.rollbacks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.streak = int(state["streak"])
        self.skipped_steps = int(state["skipped_steps"])
        self.rollbacks = int(state["rollbacks"])
