"""One official SoVITS training step (facts §6.5): discriminator update, then generator update.

1. G forward under autocast (random 32-frame window, `ids_slice`).
2. The real audio window `y = wav[ids_slice * hop : + segment_size]`, the target mel = mel of the cached
   linear spectrogram window, the generated mel = mel of `y_hat` (both fp32).
3. D step: `D(y, y_hat.detach())`, least-squares loss, backward, step.
4. G step: `D(y, y_hat)`, `c_gen * loss_gen + c_fm * loss_fm + c_mel * mel_L1 + c_kl * KL + kl_ssl`,
   backward, step. One grad scaler for both optimizers, updated once per step (official).

Pieces (`batch_fit.py`): after an out-of-memory error a batch is trained as consecutive pieces whose losses,
weighted by their share of the batch (KL: by their share of the valid frames), add up to the batch's losses
and whose gradients accumulate into the batch's one D and one G update. The D phase then runs the generator
without a graph and the G phase runs it again per piece from the same RNG state (the same windows and
dropout), so only one piece's activations are alive at a time. A single piece is exactly the official step.

Gradient clipping is off unless `train.grad_clip` is set (max total norm); the total gradient norm of each
network is always measured (after unscaling) and logged. A step whose loss or gradient norm is NaN/Inf
skips that optimizer's update (see `nan_guard.py`); under DDP all ranks agree before skipping.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gptsovits_train.audio.spectrogram import mel_spectrogram, spec_to_mel
from gptsovits_train.config import AudioConfig, TrainConfig
from gptsovits_train.models.commons import slice_segments
from gptsovits_train.models.losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    kl_loss,
    mel_l1_loss,
)
from gptsovits_train.train.batch_fit import (
    BatchFit,
    applying_update,
    forget_unscale,
    set_torch_rng,
    torch_rng,
)
from gptsovits_train.train.dataset import Batch
from gptsovits_train.train.distributed import DistContext
from gptsovits_train.train.precision import Precision, autocast, full_precision

LOG = logging.getLogger(__name__)


@dataclass
class StepResult:
    """Outcome of one step: whether each update was applied, and the numbers to log."""

    d_ok: bool
    g_ok: bool
    values: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.d_ok and self.g_ok


def _grad_norm(params: Sequence[torch.nn.Parameter], clip: float | None) -> torch.Tensor:
    """Total L2 norm of the gradients (clipping them to `clip` when set)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    if clip is not None:
        return torch.nn.utils.clip_grad_norm_(params, max_norm=clip, error_if_nonfinite=False)
    return torch.nn.utils.get_total_norm(grads, error_if_nonfinite=False)


def _all_ranks(flag: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """`flag` (a 0-dim bool tensor) and-ed over every DDP rank, on the device: no host synchronisation."""
    if not ctx.distributed:
        return flag
    as_int = flag.to(torch.int32)
    torch.distributed.all_reduce(as_int, op=torch.distributed.ReduceOp.MIN)
    return as_int.bool()


def _update(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.nn.Parameter],
    scaler: torch.amp.GradScaler,
    clip: float | None,
    ctx: DistContext,
) -> tuple[torch.Tensor, torch.Tensor]:
    """After the scaled backward of `loss` (the batch's loss): unscale, gradient norm (clipped when `clip`
    is set), and the update unless the step is non-finite — decided on the device, without reading
    anything back to the host.

    Returns `ok` (0-dim bool tensor, the same on every DDP rank: the update was applied, as far as the NaN
    guard is concerned) and the total gradient norm.

    - fp32/bf16: `ok = finite(loss) and finite(grad norm)`; a non-finite step is skipped by handing the
      optimizer `found_inf` (fused AdamW then leaves weights, moments and its step count untouched).
    - fp16: a non-finite loss poisons the gradients before `unscale_`, so that the grad scaler skips the
      update and lowers its scale; inf gradients alone are the scaler's normal overflow handling and do
      not count as a non-finite step (`ok = finite(loss)`), as before.
    """
    loss_ok = torch.isfinite(loss.detach())
    grads = [p.grad for p in params if p.grad is not None]
    if scaler.is_enabled():
        loss_ok = _all_ranks(loss_ok, ctx)
        if grads:  # +NaN where the loss is not finite, +0 otherwise
            torch._foreach_add_(grads, torch.where(loss_ok, 0.0, math.nan).to(grads[0].dtype))
        scaler.unscale_(optimizer)
        gnorm = _grad_norm(params, clip)
        with applying_update("SoVITS optimizer"):
            scaler.step(optimizer)
        return loss_ok, gnorm
    gnorm = _grad_norm(params, clip)
    ok = _all_ranks(loss_ok & torch.isfinite(gnorm), ctx)
    with applying_update("SoVITS optimizer"):
        skip_if_bad(optimizer, ok)
    return ok, gnorm


def skip_if_bad(optimizer: torch.optim.Optimizer, ok: torch.Tensor) -> None:
    """`optimizer.step()`, skipped on the device when `ok` is False (fused optimizers read `found_inf`;
    any other optimizer makes this read `ok` on the host)."""
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        opt: Any = optimizer
        opt.grad_scale, opt.found_inf = None, (~ok).float()
        try:
            optimizer.step()
        finally:
            del opt.grad_scale, opt.found_inf
    elif bool(ok):
        optimizer.step()


def _backward_and_update(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.nn.Parameter],
    scaler: torch.amp.GradScaler,
    clip: float | None,
    ctx: DistContext,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled backward of `loss`, then `_update` (a batch trained in one piece)."""
    scaler.scale(loss).backward()
    return _update(loss, optimizer, params, scaler, clip, ctx)


@dataclass
class _Generated:
    """The generator's output on one piece and the targets of its random windows."""

    out: Any  # GeneratorOutput (with its graph in the G phase)
    y: torch.Tensor  # (b, 1, segment) real audio windows
    y_mel: torch.Tensor  # (b, n_mels, segment_frames) fp32
    y_hat_mel: torch.Tensor  # (b, n_mels, segment_frames) fp32


@dataclass
class DPhase:
    """The discriminator half of a step (its update is applied when `SovitsStep.d_phase` returns).

    `kept`: the generator's output with its graph, for the G phase, when the batch was one piece;
    `rngs`: the torch RNG state before each piece's generator forward (several pieces: the G phase re-runs
    each forward from the same state).
    """

    ok: torch.Tensor
    gnorm: torch.Tensor
    loss: torch.Tensor
    kept: _Generated | None
    rngs: list[tuple[torch.Tensor, list[torch.Tensor]]]


class SovitsStep:
    """One official D+G step over a batch given as pieces (see the module doc). `G`/`D` may be DDP
    wrappers; `update=False` runs the passes without any update (the `batch_size: auto` measurement)."""

    def __init__(
        self,
        G: torch.nn.Module,
        D: torch.nn.Module,
        *,
        optim_g: torch.optim.Optimizer,
        optim_d: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        g_params: Sequence[torch.nn.Parameter],
        d_params: Sequence[torch.nn.Parameter],
        segment_frames: int,
        audio: AudioConfig,
        train: TrainConfig,
        device: torch.device,
        precision: Precision,
        ctx: DistContext,
    ) -> None:
        self.G, self.D = G, D
        self.optim_g, self.optim_d, self.scaler = optim_g, optim_d, scaler
        self.g_params, self.d_params = g_params, d_params
        self.segment_frames, self.audio, self.train = segment_frames, audio, train
        self.device, self.precision, self.ctx = device, precision, ctx

    def _generate(self, piece: Batch) -> _Generated:
        """Generator forward on `piece` (`b` items) and the targets of its random windows."""
        hop, device = self.audio.hop_length, self.device
        with autocast(device, self.precision):
            out: Any = self.G(
                piece.ssl, piece.spec, piece.spec_lengths, piece.text, piece.text_lengths, piece.sv_emb
            )
        y = slice_segments(piece.wav, out.ids_slice * hop, self.segment_frames * hop)
        with full_precision(device):
            y_mel = spec_to_mel(
                slice_segments(piece.spec, out.ids_slice, self.segment_frames).float(), self.audio
            )
            y_hat_mel = mel_spectrogram(out.y_hat.float().squeeze(1), self.audio)[:, :, : self.segment_frames]
        return _Generated(out, y, y_mel, y_hat_mel)

    def d_phase(self, batch: Batch, pieces: Sequence[slice], *, update: bool = True) -> DPhase:
        """Discriminator loss `D(y, y_hat.detach())` of every piece, backward, and the D update."""
        self.optim_d.zero_grad(set_to_none=True)
        one = len(pieces) == 1
        total = torch.zeros((), device=self.device)
        kept, rngs = None, []
        for sl in pieces:
            piece = batch if one else batch.piece(sl)
            if not one:
                rngs.append(torch_rng())
            with torch.enable_grad() if one else torch.no_grad():
                gen = self._generate(piece)
            with autocast(self.device, self.precision):
                real, fake, _, _ = self.D(gen.y, gen.out.y_hat.detach())
            with full_precision(self.device):
                loss_d, _ = discriminator_loss(real, fake)
                if not one:
                    loss_d = loss_d * (piece.size / batch.size)
            self.scaler.scale(loss_d).backward()
            total = total + loss_d.detach()
            kept = gen if one else None
        if not update:
            return DPhase(torch.ones((), dtype=torch.bool), torch.zeros(()), total, kept, rngs)
        ok, gnorm = _update(total, self.optim_d, self.d_params, self.scaler, self.train.grad_clip, self.ctx)
        return DPhase(ok, gnorm, total, kept, rngs)

    def g_phase(self, batch: Batch, pieces: Sequence[slice], d: DPhase, *, update: bool = True) -> StepResult:
        """Generator loss `D(y, y_hat)` + mel + KL of every piece, backward, the G update, the scaler update.

        Reuses the D phase's generator output when it was one piece and the same `pieces`; otherwise
        re-runs each piece's generator forward (from the D phase's RNG state when it has one)."""
        t = self.train
        self.optim_g.zero_grad(set_to_none=True)
        one = len(pieces) == 1
        frames = batch.spec_lengths.sum()  # (device) valid frames of the batch, for the KL shares
        parts = [torch.zeros((), device=self.device) for _ in range(6)]  # g, mel, kl, fm, gen, kl_ssl
        for i, sl in enumerate(pieces):
            piece = batch if one else batch.piece(sl)
            if one and d.kept is not None:
                gen = d.kept
            else:
                if len(d.rngs) == len(pieces):
                    set_torch_rng(d.rngs[i])
                gen = self._generate(piece)
            d.kept = None
            with autocast(self.device, self.precision):
                _, fake, fmap_r, fmap_g = self.D(gen.y, gen.out.y_hat)
            share = piece.size / batch.size
            with full_precision(self.device):
                loss_mel, _ = mel_l1_loss(gen.y_mel, gen.y_hat_mel)
                loss_kl, _ = kl_loss(gen.out.z_p, gen.out.logs_q, gen.out.m_p, gen.out.logs_p, gen.out.z_mask)
                loss_fm, _ = feature_matching_loss(fmap_r, fmap_g)
                loss_gen, _ = generator_adversarial_loss(fake)
                kl_ssl = gen.out.kl_ssl.float()
                if not one:
                    loss_mel, loss_fm, loss_gen, kl_ssl = (
                        x * share for x in (loss_mel, loss_fm, loss_gen, kl_ssl)
                    )
                    loss_kl = loss_kl * (piece.spec_lengths.sum() / frames)  # its share of valid frames
                loss_g = (
                    t.c_gen * loss_gen + t.c_fm * loss_fm + t.c_mel * loss_mel + t.c_kl * loss_kl + kl_ssl
                )
            self.scaler.scale(loss_g).backward()
            for j, x in enumerate((loss_g, loss_mel, loss_kl, loss_fm, loss_gen, kl_ssl)):
                parts[j] = parts[j] + x.detach()
            del gen, fake, fmap_r, fmap_g
        self.optim_d.zero_grad(set_to_none=True)  # D received gradients from the G loss: never used
        loss_g = parts[0]
        if update:
            g_ok, gnorm_g = _update(loss_g, self.optim_g, self.g_params, self.scaler, t.grad_clip, self.ctx)
            with applying_update("grad scaler"):
                self.scaler.update()  # also after a skipped update: unscale_ has run; a NaN lowers the scale
        else:
            g_ok, gnorm_g = torch.ones((), dtype=torch.bool), torch.zeros(())
        self.optim_d.zero_grad(set_to_none=True)
        self.optim_g.zero_grad(set_to_none=True)
        return self._result(d, loss_g, parts[1:], gnorm_g, g_ok)

    def _result(
        self,
        d: DPhase,
        loss_g: torch.Tensor,
        parts: list[torch.Tensor],
        gnorm_g: torch.Tensor,
        g_ok: torch.Tensor,
    ) -> StepResult:
        """One read-back per step: every logged number and both verdicts in one tensor."""
        names = ["loss/d", "loss/g", "loss/mel", "loss/kl", "loss/fm", "loss/gen", "loss/kl_ssl"]
        names += ["grad_norm/d", "grad_norm/g"]
        values_t = [d.loss, loss_g, *parts, d.gnorm, gnorm_g, d.ok, g_ok]
        if self.scaler.is_enabled():
            names.append("amp/scale")
            scale = self.scaler._get_scale_async()  # the tensor; get_scale() would read it apart
            assert scale is not None
            values_t.append(scale)
        numbers = torch.stack([x.detach().reshape(()).float().to(loss_g.device) for x in values_t]).tolist()
        d_applied, g_applied = bool(numbers[9]), bool(numbers[10])
        values = dict(zip(names, numbers[:9] + numbers[11:], strict=True))
        if not (d_applied and g_applied):
            bad = ", ".join(f"{k}={v}" for k, v in values.items() if not math.isfinite(v))
            LOG.warning(
                "non-finite step skipped (D update %s, G update %s): %s",
                "kept" if d_applied else "skipped",
                "kept" if g_applied else "skipped",
                bad or "(scaler overflow)",
            )
        return StepResult(d_ok=d_applied, g_ok=g_applied, values=values)

    def forget_partial_step(self, *, d_applied: bool) -> None:
        """After an out-of-memory error: drop every gradient and the scaler's record of this step's
        unscaling, except the applied D update's (its overflow flag must still reach `scaler.update()`)."""
        self.optim_d.zero_grad(set_to_none=True)
        self.optim_g.zero_grad(set_to_none=True)
        forget_unscale(self.scaler, self.optim_g if d_applied else None)

    def dry_run(self, batch: Batch) -> None:
        """The passes of one step on `batch` in one piece, without any update (gradients cleared)."""
        pieces = [slice(0, batch.size)]
        d = self.d_phase(batch, pieces, update=False)
        self.g_phase(batch, pieces, d, update=False)


def train_step(G: torch.nn.Module, D: torch.nn.Module, batch: Batch, **parts: Any) -> StepResult:
    """Run one D+G step on `batch` (already on `device`) in one piece. `G`/`D` may be DDP wrappers;
    `parts`: the keyword arguments of `SovitsStep` (optimizers, scaler, params, config, device, ...)."""
    step = SovitsStep(G, D, **parts)
    pieces = [slice(0, batch.size)]
    return step.g_phase(batch, pieces, step.d_phase(batch, pieces))


def fitted_step(step: SovitsStep, batch: Batch, fit: BatchFit) -> StepResult:
    """One step on `batch` in pieces of `fit.micro` items; an out-of-memory error halves them and redoes
    what was not applied (see the module doc of `batch_fit`):

    - before the D update (in the D phase): the whole step, from the step's RNG state;
    - after it (in the G phase): the G phase only, with fresh generator forwards — the D update stays
      applied exactly once, and the scaler keeps its overflow record for `scaler.update()`.
    """
    rng = torch_rng() if fit.can_halve else None
    d: DPhase | None = None
    while True:
        pieces = fit.pieces(batch.size)
        try:
            if d is None:
                d = step.d_phase(batch, pieces)
            return step.g_phase(batch, pieces, d)
        except torch.OutOfMemoryError as exc:
            step.forget_partial_step(d_applied=d is not None)
            if d is not None:
                d.kept, d.rngs = None, []
            fit.halve(batch.size, "discriminator phase" if d is None else "generator phase", exc)
        if rng is not None:  # outside the except block: the failed pass's tensors are freed by now
            set_torch_rng(rng)
