"""Encoders of the SoVITS generator.

- `MelStyleEncoder` (`ref_enc`): reference spectrogram -> global style vector `ge` (official
  `modules.MelStyleEncoder`).
- `MRTE` (`enc_p.mrte`): cross-attention from content frames to phonemes plus `ge` (official
  `mrte_model.MRTE`).
- `TextEncoder` (`enc_p`): quantised SSL + phonemes -> prior mean / log-std (official
  `models.TextEncoder`).
- `PosteriorEncoder` (`enc_q`): linear spectrogram -> posterior sample z (official
  `models.PosteriorEncoder`).

Parameter names match the official modules.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from gptsovits_train.models.attention import Encoder, MultiHeadAttention
from gptsovits_train.models.commons import length_mask
from gptsovits_train.models.modules import WN

LOG = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ style encoder
class LinearNorm(nn.Module):
    """A Linear layer stored as `.fc` (official key layout)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(..., in) -> (..., out)`."""
        return self.fc(x)


class ConvNorm(nn.Module):
    """A 'same'-padded Conv1d stored as `.conv`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"ConvNorm kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, C_in, T) -> (B, C_out, T)`."""
        return self.conv(x)


class Conv1dGLU(nn.Module):
    """Residual gated conv: `x + dropout(a * sigmoid(b))`, `[a, b] = conv1(x)`."""

    def __init__(self, channels: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.channels = channels
        self.conv1 = ConvNorm(channels, 2 * channels, kernel_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, C, T) -> (B, C, T)`."""
        a, b = torch.split(self.conv1(x), self.channels, dim=1)
        return x + self.dropout(a * torch.sigmoid(b))


class StyleAttention(nn.Module):
    """Multi-head self-attention of the style encoder (`w_qs`, `w_ks`, `w_vs`, `fc`), residual output.

    Scores are scaled by `1/sqrt(d_model)` (not per-head `d_k`), as in the official module.
    """

    def __init__(self, n_head: int, d_model: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_head != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_head ({n_head})")
        self.n_head = n_head
        self.d_model = d_model
        self.w_qs = nn.Linear(d_model, d_model)
        self.w_ks = nn.Linear(d_model, d_model)
        self.w_vs = nn.Linear(d_model, d_model)
        self.fc = nn.Linear(d_model, d_model)
        self.p_dropout = dropout
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding: torch.Tensor | None) -> torch.Tensor:
        """`x (B, T, C)`, `key_padding (B, T)` bool (True = padded) -> `(B, T, C)`."""
        b, t, c = x.shape
        h = self.n_head

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, h, c // h).transpose(1, 2)  # (B, H, T, d)

        q, k, v = heads(self.w_qs(x)), heads(self.w_ks(x)), heads(self.w_vs(x))
        mask = None if key_padding is None else (~key_padding).view(b, 1, 1, t)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.p_dropout if self.training else 0.0,
            scale=self.d_model**-0.5,
        )
        out = out.transpose(1, 2).reshape(b, t, c)
        return self.dropout(self.fc(out)) + x


class MelStyleEncoder(nn.Module):
    """Reference (linear) spectrogram bins -> style vector (`spectral`, `temporal`, `slf_attn`, `fc`).

    Pipeline per frame: 2x (Linear, Mish, Dropout); 2 residual GLU convs (k=5); masked multi-head
    self-attention; Linear to `out_dim`; masked average over time.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 128,
        kernel_size: int = 5,
        n_head: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.spectral = nn.Sequential(
            LinearNorm(in_dim, hidden_dim),
            nn.Mish(),
            nn.Dropout(dropout),
            LinearNorm(hidden_dim, hidden_dim),
            nn.Mish(),
            nn.Dropout(dropout),
        )
        self.temporal = nn.Sequential(
            Conv1dGLU(hidden_dim, kernel_size, dropout), Conv1dGLU(hidden_dim, kernel_size, dropout)
        )
        self.slf_attn = StyleAttention(n_head, hidden_dim, dropout)
        self.fc = LinearNorm(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """`x (B, in_dim, T)`, `mask (B, 1, T)` float (1 = valid) or None -> `(B, out_dim, 1)`."""
        padding = None if mask is None else (mask.squeeze(1) == 0)  # (B, T) True on padding
        y = self.spectral(x.transpose(1, 2))  # (B, T, H)
        y = self.temporal(y.transpose(1, 2)).transpose(1, 2)
        if padding is not None:
            y = y.masked_fill(padding.unsqueeze(-1), 0.0)
        y = self.fc(self.slf_attn(y, padding))  # (B, T, out)
        if padding is None:
            pooled = y.mean(dim=1)
        else:
            valid = (~padding).sum(dim=1, keepdim=True).to(y.dtype)
            pooled = y.masked_fill(padding.unsqueeze(-1), 0.0).sum(dim=1) / valid
        return pooled.unsqueeze(-1)


# ----------------------------------------------------------------------------------------- MRTE
class MRTE(nn.Module):
    """Multi-reference timbre encoder: `c_post(cross_attn(c_pre(ssl), text_pre(text)) + c_pre(ssl) + ge)`.

    `hidden` must equal the channels of `ge` it receives (512 officially).
    """

    def __init__(
        self, content_channels: int = 192, hidden: int = 512, out_channels: int = 192, n_heads: int = 4
    ):
        super().__init__()
        self.cross_attention = MultiHeadAttention(hidden, hidden, n_heads)
        self.c_pre = nn.Conv1d(content_channels, hidden, 1)
        self.text_pre = nn.Conv1d(content_channels, hidden, 1)
        self.c_post = nn.Conv1d(hidden, out_channels, 1)

    def forward(
        self,
        ssl_enc: torch.Tensor,
        ssl_mask: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        ge: torch.Tensor | None,
    ) -> torch.Tensor:
        """`ssl_enc (B, C, T)`, `ssl_mask (B, 1, T)`, `text (B, C, Tt)`, `text_mask (B, 1, Tt)`,
        `ge (B, hidden, 1)` or None -> `(B, out, T)`."""
        attn_mask = text_mask.unsqueeze(2) * ssl_mask.unsqueeze(-1)  # (B, 1, T, Tt)
        c = self.c_pre(ssl_enc * ssl_mask)
        t = self.text_pre(text * text_mask)
        x = self.cross_attention(c * ssl_mask, t * text_mask, attn_mask) + c
        if ge is not None:
            x = x + ge
        return self.c_post(x * ssl_mask)


# ---------------------------------------------------------------------------------- text encoder
class TextEncoder(nn.Module):
    """Prior encoder `enc_p`: quantised SSL `(B, ssl_dim, T)` + phoneme ids -> `(x, m_p, logs_p, mask)`.

    Keys: `ssl_proj` (1x1 ssl_dim -> hidden), `encoder_ssl` (n_layers//2), `encoder_text` (n_layers),
    `text_embedding` (n_symbols x hidden), `mrte`, `encoder2` (n_layers//2), `proj` (hidden -> 2*out).
    """

    def __init__(
        self,
        out_channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        p_dropout: float,
        n_symbols: int,
        ssl_dim: int = 768,
        mrte_channels: int = 512,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.ssl_proj = nn.Conv1d(ssl_dim, hidden_channels, 1)
        self.encoder_ssl = Encoder(
            hidden_channels, filter_channels, n_heads, n_layers // 2, kernel_size, p_dropout
        )
        self.encoder_text = Encoder(
            hidden_channels, filter_channels, n_heads, n_layers, kernel_size, p_dropout
        )
        self.text_embedding = nn.Embedding(n_symbols, hidden_channels)
        self.mrte = MRTE(hidden_channels, mrte_channels, hidden_channels)
        self.encoder2 = Encoder(
            hidden_channels, filter_channels, n_heads, n_layers // 2, kernel_size, p_dropout
        )
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(
        self,
        y: torch.Tensor,
        y_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        ge: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Args:
            y: `(B, ssl_dim, T)` quantised SSL at the spectrogram frame rate.
            y_lengths: `(B,)` valid frames.
            text: `(B, Tt)` int64 phoneme ids; text_lengths `(B,)`.
            ge: `(B, mrte_channels, 1)` style vector (or None).

        Returns:
            x `(B, hidden, T)`, m_p `(B, out, T)`, logs_p `(B, out, T)`, y_mask `(B, 1, T)`.
        """
        y_mask = length_mask(y_lengths, y.shape[2], y.dtype)
        y = self.ssl_proj(y * y_mask) * y_mask
        y = self.encoder_ssl(y * y_mask, y_mask)
        text_mask = length_mask(text_lengths, text.shape[1], y.dtype)
        t = self.text_embedding(text).transpose(1, 2)
        t = self.encoder_text(t * text_mask, text_mask)
        y = self.mrte(y, y_mask, t, text_mask, ge)
        y = self.encoder2(y * y_mask, y_mask)
        stats = self.proj(y) * y_mask
        m, logs = torch.split(stats, self.out_channels, dim=1)
        return y, m, logs, y_mask


# ----------------------------------------------------------------------------- posterior encoder
class PosteriorEncoder(nn.Module):
    """`enc_q`: linear spectrogram -> posterior N(m_q, exp(logs_q)) and a sample z (`pre`, `enc`, `proj`).

    The global condition is detached (no gradient from enc_q into the reference encoder), as officially.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels)
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(
        self,
        x: torch.Tensor,
        x_lengths: torch.Tensor,
        g: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """`x (B, spec_channels, T)`, lengths `(B,)`, `g (B, gin, 1)` ->
        z, m_q, logs_q `(B, out, T)` and x_mask `(B, 1, T)`."""
        if g is not None:
            g = g.detach()
        x_mask = length_mask(x_lengths, x.shape[2], x.dtype)
        h = self.pre(x) * x_mask
        h = self.enc(h, x_mask, g=g)
        stats = self.proj(h) * x_mask
        m, logs = torch.split(stats, self.out_channels, dim=1)
        noise = standard_normal_like(m, generator)
        z = (m + noise * torch.exp(logs)) * x_mask
        return z, m, logs, x_mask


def standard_normal_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """`torch.randn_like(x)`, drawn from `generator` when given (generated on the generator's device)."""
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
