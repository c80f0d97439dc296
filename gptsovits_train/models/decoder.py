"""HiFi-GAN waveform decoder (official `models.Generator`, the SoVITS `dec`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gptsovits_train.models.commons import LRELU_SLOPE, weight_norm
from gptsovits_train.models.modules import ResBlock1, ResBlock2

LOG = logging.getLogger(__name__)


class HiFiGANDecoder(nn.Module):
    """Latent frames `(B, inter, T)` -> waveform `(B, 1, T * prod(upsample_rates))` in [-1, 1].

    Keys: `conv_pre` (k7), `ups.i` (weight-normed ConvTranspose1d, channels halve each stage),
    `resblocks.(i*K + j)` (K = len(resblock_kernel_sizes)), `conv_post` (k7, no bias), `cond`
    (1x1 from the global condition, added after `conv_pre`).
    """

    def __init__(
        self,
        initial_channel: int,
        resblock: str,
        resblock_kernel_sizes: Sequence[int],
        resblock_dilation_sizes: Sequence[Sequence[int]],
        upsample_rates: Sequence[int],
        upsample_initial_channel: int,
        upsample_kernel_sizes: Sequence[int],
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        if len(upsample_rates) != len(upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes must have the same length")
        if len(resblock_kernel_sizes) != len(resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes must have the same length")
        if upsample_initial_channel % (2 ** len(upsample_rates)) != 0:
            raise ValueError(
                f"upsample_initial_channel ({upsample_initial_channel}) must be divisible by "
                f"2**{len(upsample_rates)} (channels halve at each upsampling stage)"
            )
        if resblock not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {resblock!r}")
        self.num_kernels = len(resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(initial_channel, upsample_initial_channel, 7, 1, padding=3)
        block = ResBlock1 if resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes, strict=True)):
            self.ups.append(
                weight_norm(
                    nn.ConvTranspose1d(
                        upsample_initial_channel // (2**i),
                        upsample_initial_channel // (2 ** (i + 1)),
                        k,
                        u,
                        padding=(k - u) // 2,
                    )
                )
            )
        self.resblocks = nn.ModuleList()
        ch = upsample_initial_channel
        for i in range(len(self.ups)):
            ch = upsample_initial_channel // (2 ** (i + 1))
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes, strict=True):
                self.resblocks.append(block(ch, k, d))
        self.conv_post = nn.Conv1d(ch, 1, 7, 1, padding=3, bias=False)
        self.cond: nn.Conv1d | None = None
        if gin_channels:
            self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """`x (B, inter, T)`, `g (B, gin, 1)` -> `(B, 1, T * hop)`."""
        x = self.conv_pre(x)
        if g is not None and self.cond is not None:
            x = x + self.cond(g)
        k = self.num_kernels
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            acc = self.resblocks[i * k](x)
            for j in range(1, k):
                acc = acc + self.resblocks[i * k + j](x)
            x = acc / k
        x = self.conv_post(F.leaky_relu(x))  # default slope 0.01 here, as in the official decoder
        return torch.tanh(x)
