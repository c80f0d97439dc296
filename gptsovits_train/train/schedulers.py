"""Learning-rate schedules for the generator and discriminator optimizers.

Two kinds (`train.scheduler.kind`):

- `plateau` (default): halve the lr (`factor`) of every param group when the validation metric has not
  improved for `patience` validations in a row; never below `min_lr`. After a reduction the count starts
  again, so the next halving needs another `patience` bad validations. "Improved" is the verdict of the
  run's `monitor.ValidationMonitor` (by more than `train.early_stopping.min_delta`; NaN never improves), so
  the schedule keeps no best of its own. Driven by `step_validation(verdict)`; `step_epoch()` does nothing.
- `exponential`: the official schedule, `lr *= gamma` (0.999875) once per epoch, driven by `step_epoch()`.
  (The official trainer also steps it once before epoch 1; here epoch 1 runs at the configured lr.)

Both multiply the *current* lr of each group, so the 0.4x text groups keep their ratio and a NaN rollback
that lowers the lr is respected. Both are small classes with `state_dict()`/`load_state_dict()` holding
plain numbers only (loadable with `torch.load(weights_only=True)`).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import torch

from gptsovits_train.config import SchedulerConfig
from gptsovits_train.train.monitor import Verdict

LOG = logging.getLogger(__name__)


class LrScheduler(Protocol):
    """What the training loop needs from a schedule."""

    optimizer: torch.optim.Optimizer

    def step_epoch(self) -> None: ...

    def step_validation(self, verdict: Verdict) -> bool: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def current_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [float(group["lr"]) for group in optimizer.param_groups]


class ReduceLROnPlateau:
    """Multiply every group's lr by `factor` after `patience` validations without improvement.

    Args:
        optimizer: the optimizer whose param-group lrs are changed.
        factor: multiplier in (0, 1).
        patience: validations in a row without improvement that trigger a reduction (>= 1).
        min_lr: floor for every group's lr.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        factor: float = 0.5,
        patience: int = 3,
        min_lr: float = 1e-6,
    ) -> None:
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        if min_lr < 0:
            raise ValueError("min_lr must be >= 0")
        self.optimizer = optimizer
        self.factor = factor
        self.patience = patience
        self.min_lr = min_lr
        self.bad_validations = 0
        self.num_reductions = 0

    def step_epoch(self) -> None:
        """Nothing happens per epoch; the plateau schedule only reacts to validations."""

    def step_validation(self, verdict: Verdict) -> bool:
        """Count one validation (its monitor verdict); return True when the lr was reduced."""
        if verdict.improved:
            self.bad_validations = 0
            return False
        self.bad_validations += 1
        if self.bad_validations < self.patience:
            return False
        self.bad_validations = 0
        changed = False
        for group in self.optimizer.param_groups:
            old = float(group["lr"])
            new = max(old * self.factor, self.min_lr)
            if new < old:
                group["lr"] = new
                changed = True
        if changed:
            self.num_reductions += 1
            LOG.info(
                "plateau: lr reduced to %s", ", ".join(f"{lr:.3g}" for lr in current_lrs(self.optimizer))
            )
        return changed

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "plateau",
            "bad_validations": self.bad_validations,
            "num_reductions": self.num_reductions,
            "lrs": current_lrs(self.optimizer),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "plateau":
            raise ValueError(f"not a plateau scheduler state (kind {state.get('kind')!r})")
        self.bad_validations = int(state["bad_validations"])
        self.num_reductions = int(state["num_reductions"])
        _restore_lrs(self.optimizer, state["lrs"])


class ExponentialDecay:
    """The official schedule: every group's lr is multiplied by `gamma` once per epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, gamma: float = 0.999875) -> None:
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        self.optimizer = optimizer
        self.gamma = gamma
        self.epochs_stepped = 0

    def step_epoch(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = float(group["lr"]) * self.gamma
        self.epochs_stepped += 1

    def step_validation(self, verdict: Verdict) -> bool:
        """Validations do not change the exponential schedule."""
        return False

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "exponential",
            "epochs_stepped": self.epochs_stepped,
            "lrs": current_lrs(self.optimizer),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "exponential":
            raise ValueError(f"not an exponential scheduler state (kind {state.get('kind')!r})")
        self.epochs_stepped = int(state["epochs_stepped"])
        _restore_lrs(self.optimizer, state["lrs"])


def _restore_lrs(optimizer: torch.optim.Optimizer, lrs: list[float]) -> None:
    if len(lrs) != len(optimizer.param_groups):
        raise ValueError(
            f"scheduler state has {len(lrs)} lrs but the optimizer has {len(optimizer.param_groups)} groups"
        )
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        group["lr"] = float(lr)


def build_scheduler(cfg: SchedulerConfig, optimizer: torch.optim.Optimizer) -> LrScheduler:
    """The schedule named by `cfg.kind` for one optimizer."""
    if cfg.kind == "plateau":
        return ReduceLROnPlateau(optimizer, factor=cfg.factor, patience=cfg.patience, min_lr=cfg.min_lr)
    return ExponentialDecay(optimizer, gamma=cfg.gamma)
