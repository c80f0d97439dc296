"""SoVITS training losses as the official step computes them (facts §6.5), in fp32.

Every function is pure and returns `(total, parts)`: `total` is a 0-dim fp32 tensor (with gradient),
`parts` a dict of named 0-dim tensors (detached) for logging.

Weights: the official step uses `loss_gen + loss_fm + 45*loss_mel + 1*loss_kl + kl_ssl`. Here:
- `feature_matching_loss` INCLUDES the official factor 2 (its total is the official `loss_fm`);
- `mel_l1_loss` does NOT include `c_mel = 45` (the caller multiplies);
- `kl_loss` does NOT include `c_kl = 1` (the caller multiplies).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

LOG = logging.getLogger(__name__)

FM_FACTOR = 2.0
"""Official multiplier inside `feature_loss` (`loss * 2`)."""

Parts = dict[str, torch.Tensor]


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x.float()


def discriminator_loss(
    real_scores: Sequence[torch.Tensor], fake_scores: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, Parts]:
    """Least-squares GAN loss of the discriminator: `sum_k mean((1 - D_k(y))^2) + mean(D_k(y_hat)^2)`.

    Args:
        real_scores, fake_scores: one `(B, N_k)` tensor per sub-discriminator.

    Returns:
        (total, {"real/k": ..., "fake/k": ...}) with k the sub-discriminator index.
    """
    if len(real_scores) != len(fake_scores) or not real_scores:
        raise ValueError("need the same, non-zero number of real and fake score tensors")
    total = torch.zeros((), dtype=torch.float32, device=real_scores[0].device)
    parts: Parts = {}
    for k, (dr, dg) in enumerate(zip(real_scores, fake_scores, strict=True)):
        r = torch.mean((1.0 - _f32(dr)) ** 2)
        g = torch.mean(_f32(dg) ** 2)
        total = total + r + g
        parts[f"real/{k}"] = r.detach()
        parts[f"fake/{k}"] = g.detach()
    return total, parts


def generator_adversarial_loss(fake_scores: Sequence[torch.Tensor]) -> tuple[torch.Tensor, Parts]:
    """Least-squares GAN loss of the generator: `sum_k mean((1 - D_k(y_hat))^2)`.

    Returns:
        (total, {"gen/k": ...}).
    """
    if not fake_scores:
        raise ValueError("need at least one score tensor")
    total = torch.zeros((), dtype=torch.float32, device=fake_scores[0].device)
    parts: Parts = {}
    for k, dg in enumerate(fake_scores):
        term = torch.mean((1.0 - _f32(dg)) ** 2)
        total = total + term
        parts[f"gen/{k}"] = term.detach()
    return total, parts


def feature_matching_loss(
    fmaps_real: Sequence[Sequence[torch.Tensor]], fmaps_fake: Sequence[Sequence[torch.Tensor]]
) -> tuple[torch.Tensor, Parts]:
    """Feature matching: `2 * sum_k sum_l mean(|fmap_real.detach() - fmap_fake|)` (factor 2 included).

    The real maps are detached here, so no gradient reaches the discriminator through them.

    Returns:
        (total, {"fm/k": 2 * sum_l mean|...| for sub-discriminator k}).
    """
    if len(fmaps_real) != len(fmaps_fake) or not fmaps_real:
        raise ValueError("need the same, non-zero number of real and fake feature-map lists")
    total = torch.zeros((), dtype=torch.float32, device=fmaps_real[0][0].device)
    parts: Parts = {}
    for k, (dr, dg) in enumerate(zip(fmaps_real, fmaps_fake, strict=True)):
        if len(dr) != len(dg):
            raise ValueError(f"sub-discriminator {k}: {len(dr)} real vs {len(dg)} fake feature maps")
        term = torch.zeros((), dtype=torch.float32, device=total.device)
        for rl, gl in zip(dr, dg, strict=True):
            term = term + torch.mean(torch.abs(_f32(rl).detach() - _f32(gl)))
        term = FM_FACTOR * term
        total = total + term
        parts[f"fm/{k}"] = term.detach()
    return total, parts


def mel_l1_loss(y_mel: torch.Tensor, y_hat_mel: torch.Tensor) -> tuple[torch.Tensor, Parts]:
    """Mean absolute difference of two log-mel tensors of equal shape (no `c_mel` weight).

    Returns:
        (total, {"mel": total}).
    """
    if y_mel.shape != y_hat_mel.shape:
        raise ValueError(f"mel shapes differ: {tuple(y_mel.shape)} vs {tuple(y_hat_mel.shape)}")
    total = torch.mean(torch.abs(_f32(y_mel) - _f32(y_hat_mel)))
    return total, {"mel": total.detach()}


def kl_loss(
    z_p: torch.Tensor, logs_q: torch.Tensor, m_p: torch.Tensor, logs_p: torch.Tensor, z_mask: torch.Tensor
) -> tuple[torch.Tensor, Parts]:
    """KL term of the official step (no `c_kl` weight).

    `sum[(logs_p - logs_q - 0.5 + 0.5 * (z_p - m_p)^2 * exp(-2 logs_p)) * mask] / sum(mask)`: summed over
    channels, averaged over valid frames.

    Args:
        z_p, logs_q, m_p, logs_p: `(B, C, T)`.
        z_mask: `(B, 1, T)`.

    Returns:
        (total, {"kl": total}).
    """
    z_p, logs_q, m_p, logs_p, z_mask = (_f32(t) for t in (z_p, logs_q, m_p, logs_p, z_mask))
    kl = logs_p - logs_q - 0.5 + 0.5 * (z_p - m_p) ** 2 * torch.exp(-2.0 * logs_p)
    total = torch.sum(kl * z_mask) / torch.sum(z_mask)
    return total, {"kl": total.detach()}
