"""The one owner of "best": every validation goes to `ValidationMonitor.observe`, which returns a `Verdict`.

Everything that cares about the monitored metric reads that verdict instead of keeping its own best:

- `best.pt` is written when `verdict.improved` (`run_checkpoints.RunCheckpoints`), and the best record stored
  in every checkpoint, the summary and the reload at the end of the run are the monitor's best;
- early stopping is the verdict's `should_stop` (patience, warm-up, `enabled`: this class);
- the plateau schedule counts validations whose verdict did not improve (`schedulers.ReduceLROnPlateau`);
- the top-k epoch files rank by `verdict.value` (a ranking of scores, not a notion of best).

>>> m = ValidationMonitor("val/mel", patience=2, min_delta=0.0)
>>> [m.observe(v, epoch).should_stop for epoch, v in enumerate([0.5, 0.4, 0.45, 0.41], start=1)]
[False, False, False, True]
>>> m.best_epoch, m.best_value
(2, 0.4)

Rules (mode "min"; "max" mirrors them), with the knobs of `train.early_stopping`:

- improvement: `value < best - min_delta` (strict). The first finite value is always an improvement, and an
  improvement is the new best. NaN/Inf never improves and never becomes the best.
- patience counts validations, not epochs: the run stops at the `patience`-th validation in a row without
  an improvement.
- warm-up: validations at epochs `<= warmup_epochs` still record a new best, but a missed improvement does
  not use up patience, so stopping can first trigger `patience` validations after the warm-up.
- `enabled=False` keeps the bookkeeping (best, patience count) but never asks to stop.

Where the knobs now agree (they used to disagree): the best checkpoint used a strict `<` of its own, so a
value better than the best by less than `min_delta` became `best.pt` without resetting early stopping's
patience, and the reported best could differ from the one patience counted from. Now `best.pt`, the
reported best epoch, the reload at the end, patience and the plateau schedule all use the rule above; with
`min_delta: 0` it is exactly the former strict rule of the checkpoints. The plateau schedule's improvement
threshold was already `min_delta`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

from gptsovits_train.config import EarlyStoppingConfig

LOG = logging.getLogger(__name__)

Mode = Literal["min", "max"]


@dataclass(frozen=True)
class Verdict:
    """What one validation meant for the run."""

    epoch: int
    step: int
    value: float  # the monitored metric of this validation (may be NaN/Inf)
    improved: bool  # it beat the best by more than min_delta: it is the new best
    best_value: float | None  # after this validation
    best_epoch: int | None
    patience_left: int  # validations without improvement still allowed before the run stops
    should_stop: bool
    reason: str  # one line: improved / did not improve / why the run stops


class ValidationMonitor:
    """Decide, for each validation of `monitor`, whether it is the new best and whether the run should stop.

    Args:
        monitor: name of the watched metric (for messages and the checkpoint).
        mode: "min" (lower is better) or "max".
        patience: validations in a row without improvement that stop the run (>= 1).
        min_delta: an improvement must beat the best by more than this (>= 0).
        warmup_epochs: validations at or before this epoch never use up patience.
        enabled: when False, `observe` keeps the bookkeeping but never answers `should_stop=True`.

    Raises:
        ValueError: on an unknown mode or a zero patience, negative min_delta or warm-up.
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
        self.best_step: int | None = None
        self.wait_count = 0
        self.stopped_epoch: int | None = None
        self.stop_reason: str | None = None

    @classmethod
    def from_config(cls, cfg: EarlyStoppingConfig) -> ValidationMonitor:
        return cls(
            cfg.monitor,
            mode="min",
            patience=cfg.patience,
            min_delta=cfg.min_delta,
            warmup_epochs=cfg.warmup_epochs,
            enabled=cfg.enabled,
        )

    # ------------------------------------------------------------------------------------------ queries
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

    @property
    def has_stopped(self) -> bool:
        """Whether early stopping has asked the run to stop (survives a resume)."""
        return self.enabled and self.wait_count >= self.patience

    def best_record(self) -> dict[str, Any] | None:
        """`{"epoch", "step", "metric", "value"}` of the best validation (stored in every checkpoint)."""
        if self.best_value is None:
            return None
        return {
            "epoch": self.best_epoch,
            "step": self.best_step,
            "metric": self.monitor,
            "value": self.best_value,
        }

    # ------------------------------------------------------------------------------------------ decision
    def observe(self, value: float, epoch: int, step: int = 0) -> Verdict:
        """Record the validation `value` of `epoch` (after `step` optimizer steps); return the verdict."""
        value = float(value)
        if self.is_improvement(value):
            previous = self.best_value
            self.best_value, self.best_epoch, self.best_step = value, epoch, step
            self.wait_count = 0
            if previous is None:
                reason = f"{self.monitor} = {value:.6g} (first validation)"
            else:
                reason = f"{self.monitor} improved {previous:.6g} -> {value:.6g}"
            return self._verdict(epoch, step, value, True, False, reason)
        what = "is not finite" if not math.isfinite(value) else "did not improve"
        best = (
            f"best {self.best_value:.6g} at epoch {self.best_epoch}"
            if self.best_value is not None
            else "no best"
        )
        if epoch <= self.warmup_epochs:
            reason = f"{self.monitor} = {value:.6g} {what} ({best}); warm-up until epoch {self.warmup_epochs}"
            return self._verdict(epoch, step, value, False, False, reason)
        self.wait_count += 1
        if self.wait_count >= self.patience and self.enabled:
            self.stopped_epoch = epoch
            self.stop_reason = (
                f"{self.monitor} did not improve by more than {self.min_delta:g} for "
                f"{self.wait_count} validation(s) ({best})"
            )
            return self._verdict(epoch, step, value, False, True, self.stop_reason)
        reason = (
            f"{self.monitor} = {value:.6g} {what} ({best}); "
            f"{self.wait_count}/{self.patience} validations without improvement"
        )
        return self._verdict(epoch, step, value, False, False, reason)

    def _verdict(
        self, epoch: int, step: int, value: float, improved: bool, stop: bool, reason: str
    ) -> Verdict:
        return Verdict(
            epoch=epoch,
            step=step,
            value=value,
            improved=improved,
            best_value=self.best_value,
            best_epoch=self.best_epoch,
            patience_left=self.patience_left,
            should_stop=stop,
            reason=reason,
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
            "best_step": self.best_step,
            "wait_count": self.wait_count,
            "stopped_epoch": self.stopped_epoch,
            "stop_reason": self.stop_reason,
        }

    def load_state_dict(self, state: dict[str, Any], *, best: dict[str, Any] | None = None) -> None:
        """Restore the bookkeeping; the settings of this instance (from the current config) are kept.

        `best`: the checkpoint's best record. It names the weights in `best.pt`, so it wins where it differs
        from `state` (checkpoints written before the monitor owned "best" kept a strict-`<` best of their
        own; `best_step` is missing from them).
        """
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
        value = state["best_value"]
        self.best_value = None if value is None else float(value)
        self.best_epoch = state["best_epoch"]
        self.best_step = state.get("best_step")
        self.wait_count = int(state["wait_count"])
        self.stopped_epoch = state["stopped_epoch"]
        self.stop_reason = state["stop_reason"]
        if best is not None and best.get("metric", self.monitor) == self.monitor:
            self.best_value = float(best["value"])
            self.best_epoch = int(best["epoch"])
            self.best_step = int(best["step"])
