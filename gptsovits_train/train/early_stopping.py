"""Early stopping on a validation metric, in the style of Lightning's callback but without Lightning.

Feed it one value per validation; it answers `(should_stop, reason)`:

>>> es = EarlyStopping("val/mel", patience=2, min_delta=0.0)
>>> [es.step(v, epoch)[0] for epoch, v in enumerate([0.5, 0.4, 0.45, 0.41], start=1)]
[False, False, False, True]
>>> es.best_epoch, es.best_value
(2, 0.4)

Rules (mode "min"; "max" mirrors them):
- improvement: `value < best - min_delta` (strict). The first finite value is always an improvement.
- patience counts validations, not epochs: the run stops at the `patience`-th validation in a row without
  an improvement.
- warm-up: validations at epochs `<= warmup_epochs` still record a new best, but a missed improvement does
  not use up patience, so stopping can first trigger `patience` validations after the warm-up.
- NaN/Inf never improves: it counts as a validation without improvement and never becomes the best.
- `enabled=False` keeps the bookkeeping (best, patience count) but never asks to stop.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

from gptsovits_train.config import EarlyStoppingConfig

LOG = logging.getLogger(__name__)

Mode = Literal["min", "max"]


class EarlyStopping:
    """Decide when a run has stopped improving on `monitor`.

    Args:
        monitor: name of the watched metric (for messages and the checkpoint).
        mode: "min" (lower is better) or "max".
        patience: validations in a row without improvement that stop the run (>= 1).
        min_delta: an improvement must beat the best by more than this (>= 0).
        warmup_epochs: validations at or before this epoch never use up patience.
        enabled: when False, `step` keeps the bookkeeping but never returns `should_stop=True`.

    Raises:
        ValueError: on an unknown mode or a negative/zero patience, negative min_delta or warm-up.
    """

    def __init__(
        self,
        monitor: str = "val/mel",
        *,
        mode: Mode = "min",
        patience: int = 5,
        min_delta: float = 1e-4,
        warmup_epochs: int = 0,
        enabled: bool = True,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        if min_delta < 0 or not math.isfinite(min_delta):
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta}")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        self.monitor = monitor
        self.mode: Mode = mode
        self.patience = patience
        self.min_delta = float(min_delta)
        self.warmup_epochs = warmup_epochs
        self.enabled = enabled
        # State (round-trips through state_dict).
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.wait_count = 0
        self.stopped_epoch: int | None = None
        self.stop_reason: str | None = None

    @classmethod
    def from_config(cls, cfg: EarlyStoppingConfig) -> EarlyStopping:
        return cls(
            cfg.monitor,
            mode=cfg.mode,
            patience=cfg.patience,
            min_delta=cfg.min_delta,
            warmup_epochs=cfg.warmup_epochs,
            enabled=cfg.enabled,
        )

    # ------------------------------------------------------------------------------------------ decision
    def is_improvement(self, value: float) -> bool:
        """Whether `value` beats the current best by more than `min_delta` (NaN/Inf never does)."""
        if not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        if self.mode == "min":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    @property
    def patience_left(self) -> int:
        """Validations without improvement that are still allowed before the run stops."""
        return max(self.patience - self.wait_count, 0)

    def step(self, value: float, epoch: int) -> tuple[bool, str]:
        """Record the validation `value` of `epoch`; return `(should_stop, reason)`."""
        value = float(value)
        in_warmup = epoch <= self.warmup_epochs
        if self.is_improvement(value):
            previous = self.best_value
            self.best_value = value
            self.best_epoch = epoch
            self.wait_count = 0
            if previous is None:
                return False, f"{self.monitor} = {value:.6g} (first validation)"
            return False, f"{self.monitor} improved {previous:.6g} -> {value:.6g}"
        what = "is not finite" if not math.isfinite(value) else "did not improve"
        best = (
            f"best {self.best_value:.6g} at epoch {self.best_epoch}"
            if self.best_value is not None
            else "no best"
        )
        if in_warmup:
            return False, (
                f"{self.monitor} = {value:.6g} {what} ({best}); warm-up until epoch {self.warmup_epochs}"
            )
        self.wait_count += 1
        if self.wait_count >= self.patience and self.enabled:
            self.stopped_epoch = epoch
            self.stop_reason = (
                f"{self.monitor} did not improve by more than {self.min_delta:g} for "
                f"{self.wait_count} validation(s) ({best})"
            )
            return True, self.stop_reason
        return False, (
            f"{self.monitor} = {value:.6g} {what} ({best}); "
            f"{self.wait_count}/{self.patience} validations without improvement"
        )

    # ---------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Plain, `weights_only`-loadable state (settings included, so a resume can warn on changes)."""
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "warmup_epochs": self.warmup_epochs,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "wait_count": self.wait_count,
            "stopped_epoch": self.stopped_epoch,
            "stop_reason": self.stop_reason,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the bookkeeping; the settings of this instance (from the current config) are kept."""
        for key in ("monitor", "mode", "patience", "min_delta", "warmup_epochs"):
            if key in state and state[key] != getattr(self, key):
                LOG.warning(
                    "early stopping %s changed since the checkpoint: %r -> %r",
                    key,
                    state[key],
                    getattr(self, key),
                )
        if state.get("monitor", self.monitor) != self.monitor:
            # A best value of another metric means nothing for this one: start the bookkeeping afresh.
            return
        best = state["best_value"]
        self.best_value = None if best is None else float(best)
        self.best_epoch = state["best_epoch"]
        self.wait_count = int(state["wait_count"])
        self.stopped_epoch = state["stopped_epoch"]
        self.stop_reason = state["stop_reason"]
