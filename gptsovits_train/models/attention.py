"""Transformer pieces of the SoVITS text encoder (VITS-style, relative positions, post-norm).

Official counterparts: `module/attentions.py` (Encoder, MultiHeadAttention, FFN) and
`module/modules.py: LayerNorm`. Parameter names match the official ones.

Relative-position attention (window W = 4, heads share one table) is computed on the 2W+1 band
only: `q . emb_rel_k` is a `(B, H, T, 2W+1)` product that a pad/reshape "skew" turns into the banded
`(B, H, T, T)` bias, and the attention weights on the band are read back the same way for the
relative values. The official code multiplies by a zero-padded `(2T-1)`-row table instead; the result
is the same.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

LOG = logging.getLogger(__name__)

MASK_FILL = -1e4
"""Score given to masked positions (official value; representable in fp16)."""


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of `(B, C, T)` tensors (parameters `gamma`, `beta`)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, C, T) -> (B, C, T)`."""
        y = F.layer_norm(x.transpose(1, -1), (self.channels,), self.gamma, self.beta, self.eps)
        return y.transpose(1, -1)


def _band_to_full(rel: torch.Tensor, window: int) -> torch.Tensor:
    """`(B, H, T, 2W+1)` band (column r = offset r-W) -> `(B, H, T, T)` with zeros off the band."""
    b, h, t, width = rel.shape
    padded = F.pad(rel, (0, t))  # (B, H, T, T + 2W + 1)
    flat = padded.reshape(b, h, t * (t + width))[:, :, : t * (t + width - 1)]
    return flat.view(b, h, t, t + width - 1)[:, :, :, window : window + t]


def _full_to_band(full: torch.Tensor, window: int) -> torch.Tensor:
    """`(B, H, T, T)` -> `(B, H, T, 2W+1)` band, column r holding `full[i, i + r - W]` (0 outside)."""
    b, h, t, _ = full.shape
    width = 2 * window + 1
    padded = F.pad(full, (window, window))  # (B, H, T, T + 2W)
    flat = F.pad(padded.reshape(b, h, t * (t + 2 * window)), (0, t))
    return flat.view(b, h, t, t + width)[:, :, :, :width]


class MultiHeadAttention(nn.Module):
    """Multi-head attention with 1x1-conv projections, optional relative positions (self-attention).

    Parameters: `conv_q/k/v/o` (Conv1d k=1) and, with `window_size`, `emb_rel_k`/`emb_rel_v`
    `(1, 2W+1, C/H)` (shared by the heads).
    """

    def __init__(
        self,
        channels: int,
        out_channels: int,
        n_heads: int,
        p_dropout: float = 0.0,
        window_size: int | None = None,
    ) -> None:
        super().__init__()
        if channels % n_heads != 0:
            raise ValueError(f"channels ({channels}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.k_channels = channels // n_heads
        self.window_size = window_size
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, out_channels, 1)
        self.drop = nn.Dropout(p_dropout)
        self.emb_rel_k: nn.Parameter | None
        self.emb_rel_v: nn.Parameter | None
        if window_size is not None:
            std = self.k_channels**-0.5
            self.emb_rel_k = nn.Parameter(torch.randn(1, 2 * window_size + 1, self.k_channels) * std)
            self.emb_rel_v = nn.Parameter(torch.randn(1, 2 * window_size + 1, self.k_channels) * std)
        else:
            self.emb_rel_k = None
            self.emb_rel_v = None
        nn.init.xavier_uniform_(self.conv_q.weight)
        nn.init.xavier_uniform_(self.conv_k.weight)
        nn.init.xavier_uniform_(self.conv_v.weight)

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attend from `x` `(B, C, Tq)` to `c` `(B, C, Tk)`.

        Args:
            attn_mask: `(B, 1, Tq, Tk)` (1 = keep, 0 = masked), or None.

        Returns:
            `(B, C_out, Tq)`.
        """
        b, channels, t_q = x.shape
        t_k = c.shape[2]
        h, d = self.n_heads, self.k_channels
        q = self.conv_q(x).view(b, h, d, t_q).transpose(2, 3) * (1.0 / math.sqrt(d))  # (B, H, Tq, d)
        k = self.conv_k(c).view(b, h, d, t_k)  # (B, H, d, Tk)
        v = self.conv_v(c).view(b, h, d, t_k).transpose(2, 3)  # (B, H, Tk, d)

        scores = torch.matmul(q, k)  # (B, H, Tq, Tk)
        if self.emb_rel_k is not None and self.window_size is not None:
            if t_q != t_k:
                raise ValueError("relative attention is only defined for self-attention")
            rel_logits = torch.matmul(q, self.emb_rel_k.transpose(1, 2).unsqueeze(0))  # (B, H, T, 2W+1)
            scores = scores + _band_to_full(rel_logits, self.window_size)
        if attn_mask is not None:
            scores = scores.masked_fill(attn_mask == 0, MASK_FILL)
        p_attn = self.drop(F.softmax(scores, dim=-1))
        out = torch.matmul(p_attn, v)  # (B, H, Tq, d)
        if self.emb_rel_v is not None and self.window_size is not None:
            band = _full_to_band(p_attn, self.window_size)  # (B, H, T, 2W+1)
            out = out + torch.matmul(band, self.emb_rel_v.unsqueeze(0))
        out = out.transpose(2, 3).reshape(b, channels, t_q)
        return self.conv_o(out)


class FFN(nn.Module):
    """Position-wise conv feed-forward: conv(k) -> ReLU -> dropout -> conv(k), masked ('same' padding)."""

    def __init__(
        self, in_channels: int, out_channels: int, filter_channels: int, kernel_size: int, p_dropout: float
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        pad = (kernel_size - 1) // 2 if kernel_size % 2 == 1 else 0
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size, padding=pad)
        self.conv_2 = nn.Conv1d(filter_channels, out_channels, kernel_size, padding=pad)
        self.drop = nn.Dropout(p_dropout)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        # odd kernels are padded by the convs themselves; even kernels pad (k-1)//2 left, k//2 right
        if self.kernel_size % 2 == 1:
            return x
        return F.pad(x, ((self.kernel_size - 1) // 2, self.kernel_size // 2))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        """`(B, C_in, T)`, mask `(B, 1, T)` -> `(B, C_out, T)`."""
        x = self.conv_1(self._pad(x * x_mask))
        x = self.drop(torch.relu(x))
        x = self.conv_2(self._pad(x * x_mask))
        return x * x_mask


class Encoder(nn.Module):
    """Post-norm transformer encoder with relative-position self-attention (official `attentions.Encoder`).

    Keys: `attn_layers.i`, `norm_layers_1.i`, `ffn_layers.i`, `norm_layers_2.i`.
    """

    def __init__(
        self,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int = 1,
        p_dropout: float = 0.0,
        window_size: int = 4,
    ) -> None:
        super().__init__()
        self.n_layers = n_layers
        self.drop = nn.Dropout(p_dropout)
        self.attn_layers = nn.ModuleList()
        self.norm_layers_1 = nn.ModuleList()
        self.ffn_layers = nn.ModuleList()
        self.norm_layers_2 = nn.ModuleList()
        for _ in range(n_layers):
            self.attn_layers.append(
                MultiHeadAttention(
                    hidden_channels, hidden_channels, n_heads, p_dropout=p_dropout, window_size=window_size
                )
            )
            self.norm_layers_1.append(ChannelLayerNorm(hidden_channels))
            self.ffn_layers.append(
                FFN(hidden_channels, hidden_channels, filter_channels, kernel_size, p_dropout=p_dropout)
            )
            self.norm_layers_2.append(ChannelLayerNorm(hidden_channels))

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
        """`(B, C, T)`, mask `(B, 1, T)` -> `(B, C, T)` (zero on padding)."""
        attn_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)  # (B, 1, T, T)
        x = x * x_mask
        for attn, norm_1, ffn, norm_2 in zip(
            self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2, strict=True
        ):
            y = self.drop(attn(x, x, attn_mask))
            x = norm_1(x + y)
            y = self.drop(ffn(x, x_mask))
            x = norm_2(x + y)
        return x * x_mask
