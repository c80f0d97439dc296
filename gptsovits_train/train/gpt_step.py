"""One GPT training batch: forward, backward, and an optimizer step when the accumulation rule says so.

The loss is the official summed cross-entropy (`T2SForward.loss`); every batch is back-propagated
(scaled by the grad scaler under fp16) and the optimizer steps after the batches chosen by
`AccumulationRule` with the LR of `OfficialS1LR` (0.01 for the first step, then 0.002).

Non-finite values: a batch whose loss is NaN/Inf is not back-propagated (its gradient would poison the
whole accumulation); at a step, non-finite gradients (after unscaling) skip the update and clear them.
Under fp16 an overflow is the scaler's normal business: it skips the step and lowers its scale.

Pieces and out-of-memory errors (`batch_fit.py`): a batch larger than `fit.micro` is back-propagated as
consecutive pieces (each exactly its own collate; the official loss is a sum, so the pieces' losses add
up). A backward that runs out of memory may already have added part of its gradients, so the gradients
of the whole accumulation window are contaminated: the stepper keeps the window's batches (CPU) and the
RNG state at its start, drops the gradients (back to the pending gradients a resume restored, if the
window began before it), halves `fit.micro` and replays the window's batches in the smaller pieces — as
if the run had used them from the window's start. A non-finite piece after finite ones of its batch
rebuilds the window the same way without that batch. Nothing is skipped silently; an out-of-memory error
in the optimizer update itself is fatal (`batch_fit.OutOfMemory`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gptsovits_train.models.t2s.decoder import T2SForward, Text2SemanticDecoder, TextMask
from gptsovits_train.train.batch_fit import BatchFit, applying_update, set_torch_rng, torch_rng
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


@dataclass
class _Window:
    """The batches back-propagated since the last optimizer step, to rebuild their gradients.

    `rng`: the torch RNG state before the first of them; `base`: the pending gradients and their batch
    count that a resume restored (the window then began before this session); `skip`: positions of
    batches whose loss was not finite (never back-propagated).
    """

    batches: list[GptBatch] = field(default_factory=list)
    rng: tuple[torch.Tensor, list[torch.Tensor]] | None = None
    base: tuple[int, list[torch.Tensor | None]] | None = None
    skip: set[int] = field(default_factory=set)


class _NonFinitePiece(Exception):
    """A piece's loss is not finite after earlier pieces of its batch were back-propagated."""


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
        fit: BatchFit | None = None,
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
        self.fit = fit or BatchFit(1 << 30, cap=1, margin=0.0, can_halve=False)  # no pieces, no halving
        self.window = _Window()

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
        """Forward + backward of one batch (`batch_idx` 0-based in an epoch of `n_batches`), in pieces of
        at most `fit.micro` items, then the optimizer step when the rule says so."""
        w = self.window
        if self.fit.can_halve:
            if not w.batches:
                w.rng = torch_rng()
            w.batches.append(batch)
        todo = [len(w.batches) - 1] if self.fit.can_halve else [-1]
        while True:
            try:
                for k in todo:
                    loss, acc, n_targets, finite = self._pass(w.batches[k] if k >= 0 else batch, k)
                break
            except torch.OutOfMemoryError as exc:
                self._drop_window_gradients()
                self.fit.halve(w.batches[k].size if k >= 0 else batch.size, "GPT forward/backward", exc)
            except _NonFinitePiece:
                self._drop_window_gradients()
                w.skip.add(k)
            assert w.rng is not None
            set_torch_rng(w.rng)  # replay the window from its start
            todo = list(range(len(w.batches)))
        if not finite:
            LOG.warning("GPT batch %d: non-finite loss %s, not back-propagated", batch_idx, loss)
        stepped = False
        lr_used = self.lr.current()
        if self.rule.steps_after(batch_idx, n_batches):
            stepped, grads_ok = self.step()
            finite = finite and grads_ok
        return GptBatchResult(loss, acc, loss / n_targets, finite, stepped, lr_used)

    def _pass(self, batch: GptBatch, k: int) -> tuple[float, float, int, bool]:
        """Forward + backward of one batch (window position `k`) in pieces: (summed loss, top-3 accuracy
        weighted by items, target count, finite)."""
        pieces = self.fit.pieces(batch.size)
        loss = acc = 0.0
        n_targets = 0
        for i, sl in enumerate(pieces):
            out = self.forward(batch if len(pieces) == 1 else batch.piece(sl))
            value = float(out.loss.detach())
            loss += value
            acc += out.acc_top3 * (sl.stop - sl.start) / batch.size
            n_targets += int(out.targets.numel())
            if k in self.window.skip or not math.isfinite(value):
                if i > 0 and k not in self.window.skip:
                    raise _NonFinitePiece
                return value, out.acc_top3, int(out.targets.numel()), False
            self.scaler.scale(out.loss).backward()
        self.pending_batches += 1
        return loss, acc, n_targets, True

    def _drop_window_gradients(self) -> None:
        """Back to the gradients before the window (none, or the pending ones a resume restored)."""
        base = self.window.base
        count, grads = base if base is not None else (0, [])
        params = list(self.model.parameters())
        for i, p in enumerate(params):
            g = grads[i] if grads else None
            p.grad = None if g is None else g.to(device=p.device, dtype=p.dtype).clone()
        self.pending_batches = count

    def step(self) -> tuple[bool, bool]:
        """Apply the accumulated gradients: (update applied, gradients finite).

        Nothing is applied when no batch since the last step had a finite loss.
        """
        self.window = _Window()
        if self.pending_batches == 0:
            LOG.warning("GPT step skipped: no finite batch since the last step")
            self.optimizer.zero_grad(set_to_none=True)
            return False, True
        with applying_update("GPT optimizer"):
            return self._apply()

    def _apply(self) -> tuple[bool, bool]:
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

    def dry_run(self, batch: GptBatch) -> None:
        """Forward + backward of `batch` in one piece, no update, gradients cleared (`batch_size: auto`)."""
        out = self.forward(batch)
        self.scaler.scale(out.loss).backward()
        self.optimizer.zero_grad(set_to_none=True)

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
        self.window = _Window()
        if grads is None:
            for p in params:
                p.grad = None
            return
        if len(grads) != len(params):
            raise ValueError(f"pending gradients for {len(grads)} tensors, model has {len(params)}")
        for p, g in zip(params, grads, strict=True):
            p.grad = None if g is None else g.to(device=p.device, dtype=p.dtype).clone()
        self.window = _Window(base=(self.pending_batches, [None if g is None else g.cpu() for g in grads]))
