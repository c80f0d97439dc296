"""One GPT training batch: forward, backward, and an optimizer step when the accumulation rule says so.

The loss is the official summed cross-entropy (`T2SForward.loss`); every batch is back-propagated
(scaled by the grad scaler under fp16) and the optimizer steps after the batches chosen by
`AccumulationRule` with the LR of `OfficialS1LR` (0.01 for the first step, then 0.002).

Non-finite values: a batch whose loss is NaN/Inf is not back-propagated (its gradient would poison the
whole accumulation); at a step, non-finite gradients (after unscaling) skip the update and clear them.
Under fp16 an overflow is the scaler's normal business: it skips the step and lowers its scale.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gptsovits_train.models.t2s.decoder import T2SForward, Text2SemanticDecoder, TextMask
from gptsovits_train.train.gpt_accumulation import AccumulationRule
from gptsovits_train.train.gpt_data import GptBatch
from gptsovits_train.train.precision import Precision, autocast
from gptsovits_train.train.scaled_adam import OfficialS1LR, ScaledAdam

LOG = logging.getLogger(__name__)


@dataclass
class GptBatchResult:
    """`loss`: summed CE of the batch (official `total_loss`), `acc_top3` (official metric),
    `loss_per_token`: `loss` ÷ the batch's target count, `finite`: loss and (at a step) gradients finite,
    `stepped`: an optimizer update was applied, `lr`: the LR of that update (else of the next one)."""

    loss: float
    acc_top3: float
    loss_per_token: float
    finite: bool
    stepped: bool
    lr: float


class GptStepper:
    """Owns the optimizer, LR and grad scaler of a GPT model; `state_dict()` resumes exactly.

    `model` may be DDP-wrapped (`module` is then the bare decoder). Gradients pending between steps are
    part of the state (the official rule carries them across epochs).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        rule: AccumulationRule,
        text_mask: TextMask,
        device: torch.device,
        precision: Precision,
        first_lr: float = 0.01,
        lr: float = 0.002,
    ) -> None:
        self.model = model
        self.rule = rule
        self.text_mask = text_mask
        self.device = device
        self.precision = precision
        self.optimizer = ScaledAdam(model.parameters())
        self.lr = OfficialS1LR(self.optimizer, first_lr, lr)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.pending_batches = 0

    @property
    def decoder(self) -> Text2SemanticDecoder:
        inner = getattr(self.model, "module", self.model)
        assert isinstance(inner, Text2SemanticDecoder)
        return inner

    def forward(self, batch: GptBatch) -> T2SForward:
        b = batch.to(self.device)
        with autocast(self.device, self.precision):
            out: T2SForward = self.model(
                b.phoneme_ids, b.phoneme_lens, b.semantic_ids, b.semantic_lens, b.bert, self.text_mask
            )
        return out

    def train_batch(self, batch: GptBatch, batch_idx: int, n_batches: int) -> GptBatchResult:
        """Forward + backward of one batch (`batch_idx` 0-based in an epoch of `n_batches`)."""
        out = self.forward(batch)
        loss = out.loss
        finite = bool(torch.isfinite(loss))
        if finite:
            self.scaler.scale(loss).backward()
            self.pending_batches += 1
        else:
            LOG.warning(
                "GPT batch %d: non-finite loss %s, not back-propagated", batch_idx, float(loss.detach())
            )
        stepped = False
        lr_used = self.lr.current()
        if self.rule.steps_after(batch_idx, n_batches):
            stepped, grads_ok = self.step()
            finite = finite and grads_ok
        n_targets = int(out.targets.numel())
        value = float(loss.detach())
        return GptBatchResult(value, out.acc_top3, value / n_targets, finite, stepped, lr_used)

    def step(self) -> tuple[bool, bool]:
        """Apply the accumulated gradients: (update applied, gradients finite).

        Nothing is applied when no batch since the last step had a finite loss.
        """
        if self.pending_batches == 0:
            LOG.warning("GPT step skipped: no finite batch since the last step")
            self.optimizer.zero_grad(set_to_none=True)
            return False, True
        self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        finite = all(bool(torch.isfinite(g).all()) for g in grads)
        applied = False
        if finite or self.scaler.is_enabled():
            scale_before = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
            self.scaler.step(self.optimizer)
            self.scaler.update()
            applied = finite and (not self.scaler.is_enabled() or self.scaler.get_scale() >= scale_before)
        else:
            LOG.warning("GPT step skipped: non-finite gradients")
        if applied:
            self.lr.step_done()
        self.optimizer.zero_grad(set_to_none=True)
        self.pending_batches = 0
        return applied, finite or self.scaler.is_enabled()

    def end_epoch(self) -> None:
        """Official rule: gradients stay for the next epoch; the corrected rule has stepped already."""
        if self.pending_batches and not self.rule.carries_gradients:
            raise RuntimeError("GPT epoch ended with un-stepped gradients under the per_epoch rule")

    # ------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        pending = None
        if self.pending_batches:
            pending = [
                p.grad.detach().cpu().clone() if p.grad is not None else None for p in self.model.parameters()
            ]
        return {
            "optimizer": self.optimizer.state_dict(),
            "lr": self.lr.state_dict(),
            "scaler": self.scaler.state_dict(),
            "pending_batches": self.pending_batches,
            "pending_grads": pending,
        }

    def load_state_dict(self, state: dict[str, Any], *, lr_position: bool = True) -> None:
        """Restore `state_dict()`. `lr_position=False` (a NaN rollback) keeps the live position in the
        official LR sequence and the live group LRs, so the caller's LR reduction acts as a factor."""
        live_lrs = [float(g["lr"]) for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        if lr_position:
            self.lr.load_state_dict(state["lr"])
        else:
            for group, lr in zip(self.optimizer.param_groups, live_lrs, strict=True):
                group["lr"] = lr
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.pending_batches = int(state["pending_batches"])
        grads = state.get("pending_grads")
        params = list(self.model.parameters())
        if grads is None:
            for p in params:
                p.grad = None
            return
        if len(grads) != len(params):
            raise ValueError(f"pending gradients for {len(grads)} tensors, model has {len(params)}")
        for p, g in zip(params, grads, strict=True):
            p.grad = None if g is None else g.to(device=p.device, dtype=p.dtype).clone()
