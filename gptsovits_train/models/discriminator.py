"""Multi-period discriminator (official `models.MultiPeriodDiscriminator`): one scale discriminator
(`DiscriminatorS`, raw waveform) plus one `DiscriminatorP` per period (waveform folded into
`(T/p, p)` 2-D frames). Periods 2, 3, 5, 7, 11 (v1/v2) and additionally 17, 23 (v2Pro/v2ProPlus).

All convs are weight-normed (legacy `weight_g`/`weight_v`) or, with `use_spectral_norm`, spectral-normed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gptsovits_train.models.commons import LRELU_SLOPE, get_padding, weight_norm

LOG = logging.getLogger(__name__)

PERIODS_V2 = (2, 3, 5, 7, 11)
PERIODS_PRO = (2, 3, 5, 7, 11, 17, 23)

Scores = list[torch.Tensor]
FeatureMaps = list[list[torch.Tensor]]


def _norm(use_spectral_norm: bool) -> Callable[[nn.Module], nn.Module]:
    return nn.utils.spectral_norm if use_spectral_norm else weight_norm


class DiscriminatorP(nn.Module):
    """Period discriminator: 5 strided (k x 1) Conv2d layers + `conv_post` (3 x 1)."""

    def __init__(self, period: int, kernel_size: int = 5, stride: int = 3, use_spectral_norm: bool = False):
        super().__init__()
        self.period = period
        norm = _norm(use_spectral_norm)
        chans = [1, 32, 128, 512, 1024, 1024]
        pad = (get_padding(kernel_size, 1), 0)
        self.convs = nn.ModuleList(
            [
                norm(
                    nn.Conv2d(
                        chans[i], chans[i + 1], (kernel_size, 1), (stride if i < 4 else 1, 1), padding=pad
                    )
                )
                for i in range(5)
            ]
        )
        self.conv_post = norm(nn.Conv2d(1024, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """`(B, 1, T)` -> (scores `(B, N)`, 6 feature maps); T is reflect-padded to a period multiple."""
        b, c, t = x.shape
        if t % self.period:
            n_pad = self.period - t % self.period
            x = F.pad(x, (0, n_pad), "reflect")
            t += n_pad
        x = x.view(b, c, t // self.period, self.period)
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class DiscriminatorS(nn.Module):
    """Scale discriminator on the raw waveform: 6 grouped/strided Conv1d layers + `conv_post`."""

    def __init__(self, use_spectral_norm: bool = False) -> None:
        super().__init__()
        norm = _norm(use_spectral_norm)
        self.convs = nn.ModuleList(
            [
                norm(nn.Conv1d(1, 16, 15, 1, padding=7)),
                norm(nn.Conv1d(16, 64, 41, 4, groups=4, padding=20)),
                norm(nn.Conv1d(64, 256, 41, 4, groups=16, padding=20)),
                norm(nn.Conv1d(256, 1024, 41, 4, groups=64, padding=20)),
                norm(nn.Conv1d(1024, 1024, 41, 4, groups=256, padding=20)),
                norm(nn.Conv1d(1024, 1024, 5, 1, padding=2)),
            ]
        )
        self.conv_post = norm(nn.Conv1d(1024, 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """`(B, 1, T)` -> (scores `(B, N)`, 7 feature maps)."""
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class MultiPeriodDiscriminator(nn.Module):
    """Keys `discriminators.0` (scale) and `discriminators.1..` (one per period, in order)."""

    def __init__(self, periods: Sequence[int] = PERIODS_V2, use_spectral_norm: bool = False) -> None:
        super().__init__()
        self.periods = tuple(periods)
        discs: list[nn.Module] = [DiscriminatorS(use_spectral_norm)]
        discs += [DiscriminatorP(p, use_spectral_norm=use_spectral_norm) for p in self.periods]
        self.discriminators = nn.ModuleList(discs)

    def forward(
        self, y: torch.Tensor, y_hat: torch.Tensor
    ) -> tuple[Scores, Scores, FeatureMaps, FeatureMaps]:
        """Score real `y` and generated `y_hat`, both `(B, 1, S)`.

        Returns:
            (real scores, fake scores, real feature maps, fake feature maps), one entry per
            sub-discriminator (scale first, then periods in order).
        """
        if y.shape != y_hat.shape:
            raise ValueError(f"y {tuple(y.shape)} and y_hat {tuple(y_hat.shape)} must have the same shape")
        real_scores: Scores = []
        fake_scores: Scores = []
        real_fmaps: FeatureMaps = []
        fake_fmaps: FeatureMaps = []
        # D step (y_hat detached): both halves are backpropagated, so one batched pass per sub-discriminator
        # is cheaper. G step (y_hat has a gradient): separate passes, so autograd never backpropagates
        # through the real half, which the official losses use only detached (a batched pass would).
        batched = not y_hat.requires_grad
        b = y.shape[0]
        both = torch.cat([y, y_hat], dim=0) if batched else None
        for d in self.discriminators:
            if both is not None:
                scores, fmaps = d(both)
                s_r, s_g = scores[:b], scores[b:]
                f_r, f_g = [f[:b] for f in fmaps], [f[b:] for f in fmaps]
            else:
                s_r, f_r = d(y)
                s_g, f_g = d(y_hat)
            real_scores.append(s_r)
            fake_scores.append(s_g)
            real_fmaps.append(f_r)
            fake_fmaps.append(f_g)
        return real_scores, fake_scores, real_fmaps, fake_fmaps
