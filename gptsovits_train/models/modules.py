"""Convolutional building blocks: WaveNet stack (WN), HiFi-GAN residual blocks, mean-only coupling.

Official counterparts live in `module/modules.py`; parameter names match them. Every weight-normed
conv uses the legacy `weight_g`/`weight_v` parametrisation (see `commons.weight_norm`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gptsovits_train.models.commons import LRELU_SLOPE, gated_activation, get_padding, weight_norm

LOG = logging.getLogger(__name__)


class WN(nn.Module):
    """Non-causal WaveNet stack with a global condition (`in_layers`, `res_skip_layers`, `cond_layer`).

    Layer i: dilated conv (k, dilation `dilation_rate**i`) to 2H channels, plus the condition slice
    `cond_layer(g)[:, 2H*i : 2H*(i+1)]`, gated tanh*sigmoid, then a 1x1 conv to residual+skip (2H) or, for
    the last layer, skip only (H).
    """

    def __init__(
        self,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
        p_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"WN kernel_size must be odd, got {kernel_size}")
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        self.drop = nn.Dropout(p_dropout)
        self.cond_layer: nn.Module | None = None
        if gin_channels:
            self.cond_layer = weight_norm(nn.Conv1d(gin_channels, 2 * hidden_channels * n_layers, 1))
        for i in range(n_layers):
            dilation = dilation_rate**i
            self.in_layers.append(
                weight_norm(
                    nn.Conv1d(
                        hidden_channels,
                        2 * hidden_channels,
                        kernel_size,
                        dilation=dilation,
                        padding=get_padding(kernel_size, dilation),
                    )
                )
            )
            out = 2 * hidden_channels if i < n_layers - 1 else hidden_channels
            self.res_skip_layers.append(weight_norm(nn.Conv1d(hidden_channels, out, 1)))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """`x (B, H, T)`, `x_mask (B, 1, T)`, `g (B, gin, 1)` or None -> `(B, H, T)` (masked)."""
        h = self.hidden_channels
        cond = self.cond_layer(g) if (g is not None and self.cond_layer is not None) else None
        output: torch.Tensor | None = None
        last = self.n_layers - 1
        for i, (in_layer, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers, strict=True)):
            x_in = in_layer(x)
            if cond is not None:
                x_in = x_in + cond[:, 2 * h * i : 2 * h * (i + 1)]
            acts = self.drop(gated_activation(x_in, h))
            rs = res_skip(acts)
            if i < last:
                x = (x + rs[:, :h]) * x_mask
                skip = rs[:, h:]
            else:
                skip = rs
            output = skip if output is None else output + skip
        if output is None:
            return torch.zeros_like(x)
        return output * x_mask


class ResBlock1(nn.Module):
    """HiFi-GAN residual block type 1: three (dilated conv, conv) pairs (`convs1`, `convs2`)."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3, 5)) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            [
                weight_norm(
                    nn.Conv1d(
                        channels, channels, kernel_size, dilation=d, padding=get_padding(kernel_size, d)
                    )
                )
                for d in dilation
            ]
        )
        self.convs2 = nn.ModuleList(
            [
                weight_norm(nn.Conv1d(channels, channels, kernel_size, padding=get_padding(kernel_size, 1)))
                for _ in dilation
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, C, T) -> (B, C, T)`."""
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            xt = c1(F.leaky_relu(x, LRELU_SLOPE))
            xt = c2(F.leaky_relu(xt, LRELU_SLOPE))
            x = x + xt
        return x


class ResBlock2(nn.Module):
    """HiFi-GAN residual block type 2: one dilated conv per dilation (`convs`)."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3)) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [
                weight_norm(
                    nn.Conv1d(
                        channels, channels, kernel_size, dilation=d, padding=get_padding(kernel_size, d)
                    )
                )
                for d in dilation
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, C, T) -> (B, C, T)`."""
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, LRELU_SLOPE))
        return x


class ResidualCouplingLayer(nn.Module):
    """Mean-only affine coupling: `x1 <- x1 + m(x0)` (forward), `x1 <- x1 - m(x0)` (reverse).

    Keys: `pre` (half -> hidden), `enc` (WN), `post` (hidden -> half, zero-initialised so the flow starts
    as the identity).
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        if channels % 2 != 0:
            raise ValueError(f"coupling channels must be even, got {channels}")
        self.half_channels = channels // 2
        self.pre = nn.Conv1d(self.half_channels, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels)
        self.post = nn.Conv1d(hidden_channels, self.half_channels, 1)
        with torch.no_grad():
            self.post.weight.zero_()
            self.post.bias.zero_()  # type: ignore[union-attr]  # Conv1d built with bias

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False
    ) -> torch.Tensor:
        """`x (B, C, T)`, `x_mask (B, 1, T)`, `g (B, gin, 1)` -> `(B, C, T)`."""
        x0, x1 = torch.split(x, [self.half_channels, self.half_channels], dim=1)
        h = self.pre(x0) * x_mask
        h = self.enc(h, x_mask, g=g)
        m = self.post(h) * x_mask
        x1 = (x1 - m) * x_mask if reverse else m + x1 * x_mask
        return torch.cat([x0, x1], dim=1)


class Flip(nn.Module):
    """Reverse the channel order (no parameters; keeps the official flow indices 0, 2, 4, 6)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, C, T) -> (B, C, T)`."""
        return torch.flip(x, [1])
