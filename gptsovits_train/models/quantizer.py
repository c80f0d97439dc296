"""Frozen residual vector quantizer of the SoVITS semantic tokens (official `quantize.py`/`core_vq.py`).

The official RVQ (1 layer, 1024 codes of dimension 768) learns its codebook by EMA with k-means
initialisation. Fine-tuning never trains it (facts §6.6): the official step puts it in eval mode, where
it only looks up the nearest code, has no straight-through path and returns a commit loss of 0. This
module implements exactly that frozen behaviour; the EMA/k-means training path is not implemented
(`build_generator` rejects `freeze_quantizer: false`).

State-dict keys (buffers, official names): `vq.layers.{i}._codebook.{inited,cluster_size,embed,embed_avg}`.
A codebook with `inited == 0` (a fresh, never-loaded model) is refused by `encode`; load pretrained
weights or call `ResidualVectorQuantizer.initialize_random_()` (tests, benchmarks).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

LOG = logging.getLogger(__name__)


class CodebookNotInitializedError(RuntimeError):
    """The codebook was never initialised (no pretrained weights loaded, no random init requested)."""


class EuclideanCodebook(nn.Module):
    """One codebook: buffers `inited (1,)`, `cluster_size (K,)`, `embed (K, D)`, `embed_avg (K, D)`.

    Starts like the official k-means-initialised codebook before its first batch: all zeros, inited 0.
    """

    inited: torch.Tensor
    cluster_size: torch.Tensor
    embed: torch.Tensor
    embed_avg: torch.Tensor

    def __init__(self, dim: int, codebook_size: int) -> None:
        super().__init__()
        self.dim = dim
        self.codebook_size = codebook_size
        self.register_buffer("inited", torch.zeros(1))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", torch.zeros(codebook_size, dim))
        self.register_buffer("embed_avg", torch.zeros(codebook_size, dim))

        # `inited` is read on the host once and cached (a read per forward would synchronise the GPU every
        # training step); loading a state dict or initialising clears the cache.
        self._known_initialized = False

    def is_initialized(self) -> bool:
        if not self._known_initialized:
            self._known_initialized = bool(self.inited.item() > 0)
        return self._known_initialized

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._known_initialized = False
        super()._load_from_state_dict(*args, **kwargs)

    @torch.no_grad()
    def initialize_random_(self, generator: torch.Generator | None = None) -> None:
        """Fill `embed`/`embed_avg` with Kaiming-uniform values (the official non-k-means init) and set
        `inited = 1`. `cluster_size` stays 0."""
        bound = (6.0 / self.dim) ** 0.5  # kaiming_uniform_ with a=0 on a (K, D) tensor: fan_in = D
        values = torch.rand(self.embed.shape, generator=generator) * (2 * bound) - bound
        self.embed.copy_(values)
        self.embed_avg.copy_(values)
        self.cluster_size.zero_()
        self.inited.fill_(1.0)
        self._known_initialized = False

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest code (Euclidean) of each row: `(N, D) -> (N,)` int64."""
        if not self.is_initialized():
            raise CodebookNotInitializedError(
                "the RVQ codebook is not initialised (inited == 0): load pretrained SoVITS weights, or call "
                "generator.quantizer.initialize_random_() for a randomly initialised model"
            )
        embed = self.embed.to(x.dtype)
        # same expression as the official codebook (negated squared distance, first maximum)
        dist = -(x.pow(2).sum(1, keepdim=True) - 2 * (x @ embed.t()) + embed.pow(2).sum(1).unsqueeze(0))
        return dist.max(dim=-1).indices

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """`(...,)` int64 -> `(..., D)` code vectors."""
        return nn.functional.embedding(codes, self.embed)


class VectorQuantizer(nn.Module):
    """One RVQ layer (holds `_codebook`, the official attribute name)."""

    def __init__(self, dim: int, codebook_size: int) -> None:
        super().__init__()
        self._codebook = EuclideanCodebook(dim, codebook_size)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, D, T) -> (B, T)` codes."""
        b, d, t = x.shape
        flat = x.transpose(1, 2).reshape(b * t, d)
        return self._codebook.encode(flat).view(b, t)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """`(B, T) -> (B, D, T)`."""
        return self._codebook.decode(codes).transpose(1, 2)


class ResidualVQ(nn.Module):
    """Stack of `layers` quantising successive residuals."""

    def __init__(self, dim: int, codebook_size: int, n_q: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([VectorQuantizer(dim, codebook_size) for _ in range(n_q)])


class ResidualVectorQuantizer(nn.Module):
    """Frozen RVQ: `encode` (features -> codes), `decode` (codes -> quantised features), `forward` (both).

    Codes layout is the official decode layout `(n_q, B, T)`.
    """

    def __init__(self, dimension: int = 768, n_q: int = 1, bins: int = 1024) -> None:
        super().__init__()
        self.dimension = dimension
        self.n_q = n_q
        self.bins = bins
        self.vq = ResidualVQ(dimension, bins, n_q)

    def _layers(self) -> list[VectorQuantizer]:
        return [layer for layer in self.vq.layers if isinstance(layer, VectorQuantizer)]

    def is_initialized(self) -> bool:
        return all(layer._codebook.is_initialized() for layer in self._layers())

    def initialize_random_(self, generator: torch.Generator | None = None) -> None:
        """Random codebooks marked as initialised (for models not loaded from pretrained weights)."""
        for layer in self._layers():
            layer._codebook.initialize_random_(generator)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, D, T)` features -> `(n_q, B, T)` int64 codes."""
        residual = x
        codes = []
        for layer in self._layers():
            idx = layer.encode(residual)
            codes.append(idx)
            if len(codes) < self.n_q:
                residual = residual - layer.decode(idx).to(residual.dtype)
        return torch.stack(codes)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """`(n_q', B, T)` codes (n_q' <= n_q, first layers) -> `(B, D, T)` summed code vectors."""
        if codes.dim() != 3:
            raise ValueError(f"codes must have shape (n_q, B, T), got {tuple(codes.shape)}")
        layers = self._layers()
        if codes.shape[0] > len(layers):
            raise ValueError(f"codes have {codes.shape[0]} layers, the quantizer has {len(layers)}")
        out = layers[0].decode(codes[0])
        for i in range(1, codes.shape[0]):
            out = out + layers[i].decode(codes[i])
        return out

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frozen quantisation (official eval mode).

        Args:
            x: `(B, D, T)` projected SSL features.

        Returns:
            (`(B, D, T)` quantised features (no gradient path), `(n_q, B, T)` codes, commit loss `()` = 0).
        """
        codes = self.encode(x)
        quantized = self.decode(codes).to(x.dtype)
        commit = torch.zeros((), device=x.device, dtype=torch.float32)
        return quantized, codes, commit
