"""ScaledAdam, the official GPT (s1) optimizer, and the official effective learning rate.

Our implementation of the algorithm described in the facts (§8, official `AR/modules/optim.py`), per
parameter (the official code stacks equal-shape parameters for speed; the maths is per parameter).
With step counter `s` (0 at the first step), betas (β1, β2), for each parameter `p` with gradient `g`
(a missing gradient counts as zeros):

- `delta ← β1·delta` every step; `p += delta` at the end.
- tensors (numel > 1): `param_rms` = RMS(p), set at the first step and refreshed when `s % 4 == 3`;
  the products `Σ(p·g)` of the last 4 steps are kept, and when `s % 4 == 3` and `s > 0` a size update
  `delta += (1−β1)·p·step` runs first (see `_size_update`); then
  `v ← β2·v + (1−β2)·g²` (divided by `1 − β2^(s+1)` while that is < 0.99) and
  `delta += −lr·(1−β1)·max(param_rms, min_rms)·g/(√v + eps)`.
- scalars (numel 1): Adam-like at `lr·scalar_lr_scale`, `p` clamped to ±scalar_max before the update.
- clipping: from step `clipping_update_period` on, a factor ≤ 1 keeps the global norm of
  `g·param_rms` under `clipping_scale ×` the median of the last period's norms. As officially, the
  factor reaches only the size-update sums, not the main update.

`OfficialS1LR`: the official `WarmupCosineLRSchedule` overwrites its own warm-up/cosine values, so
the first optimizer step runs at 0.01 and every later one at 0.002 (facts §9); both are configurable.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

LOG = logging.getLogger(__name__)


class ScaledAdam(torch.optim.Optimizer):
    """ScaledAdam with the official defaults (see module docstring). One or more param groups."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.95),
        clipping_scale: float | None = 2.0,
        scalar_lr_scale: float = 0.1,
        eps: float = 1e-8,
        param_min_rms: float = 1e-5,
        param_max_rms: float = 3.0,
        scalar_max: float = 10.0,
        size_update_period: int = 4,
        clipping_update_period: int = 1000,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "clipping_scale": clipping_scale,
            "scalar_lr_scale": scalar_lr_scale,
            "eps": eps,
            "param_min_rms": param_min_rms,
            "param_max_rms": param_max_rms,
            "scalar_max": scalar_max,
            "size_update_period": size_update_period,
            "clipping_update_period": clipping_update_period,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params: list[torch.Tensor] = list(group["params"])
            if not params:
                continue
            scale = self._clipping_scale(group, params)
            for p in params:
                state = self.state[p]
                if not state:
                    self._init_state(group, p, state)
                self._step_one(group, p, state, scale)
        return loss

    @staticmethod
    def _grad(p: torch.Tensor) -> torch.Tensor:
        return p.grad if p.grad is not None else torch.zeros_like(p)

    def _init_state(self, group: dict[str, Any], p: torch.Tensor, state: dict[str, Any]) -> None:
        state["step"] = 0
        state["delta"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p)
        if p.numel() > 1:
            rms = p.pow(2).mean().sqrt().reshape(1)
            state["param_rms"] = rms
            state["scale_exp_avg_sq"] = torch.zeros_like(rms)
            state["scale_grads"] = torch.zeros(group["size_update_period"], dtype=p.dtype, device=p.device)

    def _clipping_scale(self, group: dict[str, Any], params: list[torch.Tensor]) -> float:
        """Global gradient-norm clipping factor for this step (1.0 before the first full period)."""
        if group["clipping_scale"] is None:
            return 1.0
        first = self.state[params[0]]
        if not first or first["step"] == 0:
            return 1.0
        step = int(first["step"])
        period = int(group["clipping_update_period"])
        total = torch.zeros((), device=params[0].device)
        for p in params:
            g = self._grad(p)
            if p.numel() == 1:
                total += g.pow(2).sum()
            else:
                total += (g * self.state[p]["param_rms"]).pow(2).sum()
        norm = total.sqrt()
        if "model_norms" not in first:
            first["model_norms"] = torch.zeros(period, device=params[0].device)
            first["num_clipped"] = 0
        first["model_norms"][step % period] = norm
        if step % period == 0:
            ordered = first["model_norms"].sort().values
            median = float(ordered[min(period - 1, (period // 4) * 2)])
            first["model_norm_threshold"] = group["clipping_scale"] * median
            LOG.debug("ScaledAdam: step %d, clipping threshold %.3e", step, first["model_norm_threshold"])
            first["num_clipped"] = 0
        if step < period or "model_norm_threshold" not in first:
            return 1.0
        factor = min(1.0, float(first["model_norm_threshold"] / (norm + 1e-20)))
        if factor < 1.0:
            first["num_clipped"] = int(first["num_clipped"]) + 1
        return factor

    def _step_one(self, group: dict[str, Any], p: torch.Tensor, state: dict[str, Any], scale: float) -> None:
        grad = self._grad(p)
        step = int(state["step"])
        beta1 = group["betas"][0]
        delta: torch.Tensor = state["delta"]
        delta.mul_(beta1)
        if p.numel() > 1:
            period = int(group["size_update_period"])
            scaled = grad * scale if scale != 1.0 else grad
            state["scale_grads"][step % period] = (p * scaled).sum()
            if step % period == period - 1:
                state["param_rms"].copy_(p.pow(2).mean().sqrt().reshape(1))
                if step > 0:
                    self._size_update(group, p, state)
            self._tensor_update(group, p, grad, state)
        else:
            self._scalar_update(group, p, grad, state)
        state["step"] = step + 1

    @staticmethod
    def _size_update(group: dict[str, Any], p: torch.Tensor, state: dict[str, Any]) -> None:
        """Learn the parameter's overall scale from the last period's `Σ(p·g)` products."""
        beta1, beta2 = group["betas"]
        sums: torch.Tensor = state["scale_grads"]
        period = sums.shape[0]
        size_lr = group["lr"] * group["scalar_lr_scale"]
        beta2_period = beta2**period
        avg_sq: torch.Tensor = state["scale_exp_avg_sq"]
        avg_sq.mul_(beta2_period).add_(sums.pow(2).mean(), alpha=1 - beta2_period)
        n_updates = (int(state["step"]) + 1) // period
        correction = 1 - beta2_period**n_updates
        scale_step = -size_lr * math.sqrt(correction) * sums.sum() / (avg_sq.sqrt() + group["eps"])
        rms = state["param_rms"]
        scale_step = scale_step.masked_fill(rms < group["param_min_rms"], 0.0)
        scale_step = scale_step.masked_fill(rms > group["param_max_rms"], -size_lr * period)
        state["delta"].add_(p * scale_step, alpha=1 - beta1)

    @staticmethod
    def _tensor_update(
        group: dict[str, Any], p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any]
    ) -> None:
        beta1, beta2 = group["betas"]
        avg_sq: torch.Tensor = state["exp_avg_sq"]
        avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        correction = 1 - beta2 ** (int(state["step"]) + 1)
        v = avg_sq * (1.0 / correction) if correction < 0.99 else avg_sq
        denom = v.sqrt() + group["eps"]
        alpha = -group["lr"] * (1 - beta1) * state["param_rms"].clamp(min=group["param_min_rms"])
        state["delta"].add_(grad / denom * alpha)
        p.add_(state["delta"])

    @staticmethod
    def _scalar_update(
        group: dict[str, Any], p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any]
    ) -> None:
        beta1, beta2 = group["betas"]
        lr = group["lr"] * group["scalar_lr_scale"]
        avg_sq: torch.Tensor = state["exp_avg_sq"]
        avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        correction = 1 - beta2 ** (int(state["step"]) + 1)
        denom = (avg_sq / correction).sqrt() + group["eps"]
        state["delta"].add_(grad / denom, alpha=-lr * (1 - beta1))
        p.clamp_(min=-group["scalar_max"], max=group["scalar_max"])
        p.add_(state["delta"])


class OfficialS1LR:
    """The official s1 effective learning rate: `first_lr` for optimizer step 0, `lr` afterwards.

    The optimizer's param-group LR always holds the LR of the *next* step, so schedules that multiply
    group LRs (the plateau reduction, a NaN rollback) act as a factor on top: after each step the
    groups get `base(next step) × (group LR / base(this step))`. `state_dict()` holds the step count
    (the group LRs are in the optimizer's own state).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, first_lr: float = 0.01, lr: float = 0.002) -> None:
        if first_lr <= 0 or lr <= 0:
            raise ValueError(f"learning rates must be > 0 (first_lr={first_lr}, lr={lr})")
        self.optimizer = optimizer
        self.first_lr = first_lr
        self.lr = lr
        self.steps_done = 0
        for group in optimizer.param_groups:
            group["lr"] = first_lr

    def base(self, steps_done: int) -> float:
        """The official LR of the step that follows `steps_done` steps."""
        return self.first_lr if steps_done == 0 else self.lr

    def current(self) -> float:
        """The LR the next optimizer step uses (first group)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def factor(self) -> float:
        """What plateau reductions / rollbacks have multiplied the official LR by."""
        return self.current() / self.base(self.steps_done)

    def step_done(self) -> None:
        """Call after each optimizer step: moves every group to the next step's LR (factor kept)."""
        for group in self.optimizer.param_groups:
            factor = float(group["lr"]) / self.base(self.steps_done)
            group["lr"] = self.base(self.steps_done + 1) * factor
        self.steps_done += 1

    def state_dict(self) -> dict[str, Any]:
        return {"first_lr": self.first_lr, "lr": self.lr, "steps_done": self.steps_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.first_lr = float(state["first_lr"])
        self.lr = float(state["lr"])
        self.steps_done = int(state["steps_done"])
