"""One official SoVITS training step (facts §6.5): discriminator update, then generator update.

1. G forward under autocast (random 32-frame window, `ids_slice`).
2. The real audio window `y = wav[ids_slice * hop : + segment_size]`, the target mel = mel of the cached
   linear spectrogram window, the generated mel = mel of `y_hat` (both fp32).
3. D step: `D(y, y_hat.detach())`, least-squares loss, backward, step.
4. G step: `D(y, y_hat)`, `c_gen * loss_gen + c_fm * loss_fm + c_mel * mel_L1 + c_kl * KL + kl_ssl`,
   backward, step. One grad scaler for both optimizers, updated once per step (official).

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
from gptsovits_train.train.dataset import Batch
from gptsovits_train.train.distributed import DistContext, all_true
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


def _finite(x: torch.Tensor) -> bool:
    return bool(torch.isfinite(x).all())


def _backward_and_update(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.nn.Parameter],
    scaler: torch.amp.GradScaler,
    clip: float | None,
    ctx: DistContext,
) -> tuple[bool, torch.Tensor]:
    """Scaled backward, unscale, gradient norm (clipped when `clip` is set), and the update when finite.

    Returns whether the update was applied (on every DDP rank alike) and the total gradient norm. With an
    fp16 scaler, inf gradients are the scaler's own overflow handling (it skips the update itself).
    """
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    gnorm = _grad_norm(params, clip)
    ok = all_true(_finite(loss) and (scaler.is_enabled() or _finite(gnorm)), ctx)
    if ok:
        scaler.step(optimizer)
    return ok, gnorm


def train_step(
    G: torch.nn.Module,
    D: torch.nn.Module,
    batch: Batch,
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
) -> StepResult:
    """Run one D+G step on `batch` (already on `device`). `G`/`D` may be DDP wrappers."""
    hop = audio.hop_length
    seg_samples = segment_frames * hop

    # ---- generator forward and the targets of its random window
    with autocast(device, precision):
        out: Any = G(batch.ssl, batch.spec, batch.spec_lengths, batch.text, batch.text_lengths)
    y = slice_segments(batch.wav, out.ids_slice * hop, seg_samples)  # (B, 1, segment) real audio
    with full_precision(device):
        y_mel = spec_to_mel(slice_segments(batch.spec, out.ids_slice, segment_frames).float(), audio)
        y_hat_mel = mel_spectrogram(out.y_hat.float().squeeze(1), audio)[:, :, :segment_frames]

    # ---- discriminator step
    optim_d.zero_grad(set_to_none=True)
    with autocast(device, precision):
        real, fake, _, _ = D(y, out.y_hat.detach())
    with full_precision(device):
        loss_d, _ = discriminator_loss(real, fake)
    d_ok, gnorm_d = _backward_and_update(loss_d, optim_d, d_params, scaler, train.grad_clip, ctx)

    # ---- generator step
    optim_g.zero_grad(set_to_none=True)
    with autocast(device, precision):
        _, fake, fmap_r, fmap_g = D(y, out.y_hat)
    with full_precision(device):
        loss_mel, _ = mel_l1_loss(y_mel, y_hat_mel)
        loss_kl, _ = kl_loss(out.z_p, out.logs_q, out.m_p, out.logs_p, out.z_mask)
        loss_fm, _ = feature_matching_loss(fmap_r, fmap_g)
        loss_gen, _ = generator_adversarial_loss(fake)
        kl_ssl = out.kl_ssl.float()
        loss_g = (
            train.c_gen * loss_gen
            + train.c_fm * loss_fm
            + train.c_mel * loss_mel
            + train.c_kl * loss_kl
            + kl_ssl
        )
    optim_d.zero_grad(set_to_none=True)  # D received gradients from the G loss: never used
    g_ok, gnorm_g = _backward_and_update(loss_g, optim_g, g_params, scaler, train.grad_clip, ctx)
    scaler.update()  # also after a skipped update: unscale_ has run, and a NaN loss lowers the fp16 scale
    optim_d.zero_grad(set_to_none=True)
    optim_g.zero_grad(set_to_none=True)

    values = {
        "loss/d": loss_d.item(),
        "loss/g": loss_g.item(),
        "loss/mel": loss_mel.item(),
        "loss/kl": loss_kl.item(),
        "loss/fm": loss_fm.item(),
        "loss/gen": loss_gen.item(),
        "loss/kl_ssl": kl_ssl.item(),
        "grad_norm/d": gnorm_d.item(),
        "grad_norm/g": gnorm_g.item(),
    }
    if scaler.is_enabled():
        values["amp/scale"] = float(scaler.get_scale())
    if not (d_ok and g_ok):
        bad = ", ".join(f"{k}={v}" for k, v in values.items() if not math.isfinite(v))
        LOG.warning(
            "non-finite step skipped (D update %s, G update %s): %s",
            "kept" if d_ok else "skipped",
            "kept" if g_ok else "skipped",
            bad or "(scaler overflow)",
        )
    return StepResult(d_ok=d_ok, g_ok=g_ok, values=values)
