"""Building blocks of the GPT (s1) model: token embedding, sine positions, post-norm transformer.

Official counterparts: `AR/modules/embedding.py` (TokenEmbedding, SinePositionalEmbedding) and
`AR/modules/transformer.py` / `activation.py` (TransformerEncoder, MultiheadAttention). Parameter
names and shapes match the official ones so official state dicts load strictly.

The official layers hard-code dropout 0.1 (positions, attention weights, after attention, inside and
after the feed-forward block) whatever ``model.dropout`` says; `dropout` here defaults to that value.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

LOG = logging.getLogger(__name__)

HARD_CODED_DROPOUT = 0.1
"""The official transformer/position dropout probability (not configurable officially)."""

LAYER_NORM_EPS = 1e-5


class TokenEmbedding(nn.Module):
    """Embedding table (parameter `word_embeddings.weight`, `(vocab, dim)`) with optional dropout."""

    def __init__(self, dim: int, vocab_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """`(B, T)` int -> `(B, T, dim)`."""
        return self.dropout(self.word_embeddings(ids))


def sine_table(length: int, dim: int) -> torch.Tensor:
    """`(length, dim)` fp32: column 2i = sin(p·10000^(−2i/dim)), column 2i+1 = cos(same) (interleaved)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)
    return table


class SinePositionalEmbedding(nn.Module):
    """`x + alpha · table[offset : offset + T]`, then dropout. `alpha` is a trainable scalar `(1,)`.

    The table is not part of the state dict (as officially); it starts with 4000 rows and grows on
    demand.
    """

    def __init__(self, dim: int, dropout: float = HARD_CODED_DROPOUT, initial_rows: int = 4000) -> None:
        super().__init__()
        self.dim = dim
        self.alpha = nn.Parameter(torch.ones(1))
        self.dropout = nn.Dropout(dropout)
        self.table: torch.Tensor = sine_table(initial_rows, dim)

    def rows(self, start: int, stop: int, like: torch.Tensor) -> torch.Tensor:
        """Rows `[start, stop)` of the table, `(stop - start, dim)`, on `like`'s device and dtype."""
        if stop > self.table.shape[0]:
            self.table = sine_table(stop, self.dim)
        return self.table[start:stop].to(device=like.device, dtype=like.dtype)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """`(B, T, dim) -> (B, T, dim)`; positions start at `offset`."""
        return self.dropout(x + self.alpha * self.rows(offset, offset + x.shape[1], x))


class SelfAttention(nn.Module):
    """Multi-head self-attention with packed q/k/v projection (`in_proj_weight` `(3D, D)`, q, k, v order).

    Scores are `q·kᵀ/√head_dim + mask` (mask: float, 0 or −inf, `(B·H, L, L)` or broadcastable),
    softmax, dropout on the weights, then `out_proj`.
    """

    def __init__(self, dim: int, heads: int, dropout: float = HARD_CODED_DROPOUT) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by head {heads}")
        self.dim = dim
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        self.dropout = dropout
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`x (B, L, D)`, `mask (B·H, L, L)` float additive -> `(B, L, D)`."""
        b, length, d = x.shape
        h = self.heads
        hd = d // h
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, length, h, hd).transpose(1, 2).reshape(b * h, length, hd)

        q, k, v = split(q), split(k), split(v)
        scores = torch.baddbmm(mask, q * (1.0 / math.sqrt(hd)), k.transpose(1, 2))
        weights = F.dropout(torch.softmax(scores, dim=-1), p=self.dropout, training=self.training)
        out = torch.bmm(weights, v).reshape(b, h, length, hd).transpose(1, 2).reshape(b, length, d)
        return self.out_proj(out)


class TransformerLayer(nn.Module):
    """Post-norm layer: `x = norm1(x + drop(attn(x)))`, `x = norm2(x + drop(W2·drop(relu(W1·x))))`.

    Parameter order (and names) as the official layer: `self_attn`, `linear1`, `linear2`, `norm1`,
    `norm2`; the feed-forward width is `4·dim` (the official model ignores ``linear_units``).
    """

    def __init__(self, dim: int, heads: int, dropout: float = HARD_CODED_DROPOUT) -> None:
        super().__init__()
        self.self_attn = SelfAttention(dim, heads, dropout)
        self.linear1 = nn.Linear(dim, 4 * dim)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(4 * dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`(B, L, D)`, float mask `(B·H, L, L)` -> `(B, L, D)`."""
        x = self.norm1(x + self.dropout1(self.self_attn(x, mask)))
        ff = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm2(x + self.dropout2(ff))


class TransformerStack(nn.Module):
    """`layers.0 … layers.{n-1}` applied in order, no final norm."""

    def __init__(self, dim: int, heads: int, n_layers: int, dropout: float = HARD_CODED_DROPOUT) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(dim, heads, dropout) for _ in range(n_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`(B, L, D)`, float mask `(B·H, L, L)` -> `(B, L, D)`."""
        for layer in self.layers:
            x = layer(x, mask)
        return x
