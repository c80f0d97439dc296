"""Small tensor helpers shared by the SoVITS modules.

Shapes use B = batch, C = channels, T = frames (or samples for waveforms).
"""

from __future__ import annotations

import logging
import warnings
from typing import TypeVar

import torch
from torch import nn

LOG = logging.getLogger(__name__)

LRELU_SLOPE = 0.1
"""Leaky-ReLU slope of the HiFi-GAN generator, its residual blocks and the discriminators."""

_M = TypeVar("_M", bound=nn.Module)


def weight_norm(module: _M) -> _M:
    """Apply the legacy `torch.nn.utils.weight_norm` (parameters `weight_g` / `weight_v`).

    The official checkpoints store weight-normed tensors under these legacy names, so the old API is
    used on purpose; only its deprecation `FutureWarning` is silenced, locally.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*torch\.nn\.utils\.weight_norm.*deprecated", category=FutureWarning
        )
        return torch.nn.utils.weight_norm(module)


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding of an odd kernel with the given dilation."""
    return (kernel_size * dilation - dilation) // 2


def sequence_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """Boolean mask `(B, T)` that is True for `t < lengths[b]`.

    Args:
        lengths: `(B,)` integer lengths.
        max_length: T; defaults to `lengths.max()`.
    """
    if max_length is None:
        max_length = int(lengths.max().item())
    steps = torch.arange(max_length, dtype=lengths.dtype, device=lengths.device)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)


def length_mask(lengths: torch.Tensor, max_length: int, dtype: torch.dtype) -> torch.Tensor:
    """Float mask `(B, 1, T)` (1 on valid frames, 0 on padding) in `dtype`."""
    return sequence_mask(lengths, max_length).unsqueeze(1).to(dtype)


def slice_segments(x: torch.Tensor, ids_start: torch.Tensor, size: int) -> torch.Tensor:
    """Cut one window of `size` steps per batch item.

    Args:
        x: `(B, C, T)`.
        ids_start: `(B,)` integer start index of each window.
        size: window length.

    Returns:
        `(B, C, size)` with `out[b] = x[b, :, ids_start[b] : ids_start[b] + size]`. Steps past the end of
        `x` read as zeros (the official helper fails there instead).
    """
    if x.dim() != 3:
        raise ValueError(f"slice_segments expects (B, C, T), got shape {tuple(x.shape)}")
    if ids_start.shape != (x.shape[0],):
        raise ValueError(f"ids_start must have shape ({x.shape[0]},), got {tuple(ids_start.shape)}")
    ids_start = ids_start.to(device=x.device, dtype=torch.long)
    # No host synchronisation (this runs several times per training step): the negative-start check is
    # asserted on the device, and steps past the end are clamped and then zeroed instead of padding x
    # by a data-dependent amount.
    torch._assert_async((ids_start >= 0).all(), "slice_segments: negative start index")
    if x.shape[2] == 0:
        return x.new_zeros(x.shape[0], x.shape[1], size)
    index = ids_start.unsqueeze(1) + torch.arange(size, device=x.device)  # (B, size)
    inside = (index < x.shape[2]).unsqueeze(1)  # (B, 1, size)
    index = index.clamp(max=x.shape[2] - 1).unsqueeze(1).expand(-1, x.shape[1], -1)
    return torch.where(inside, torch.gather(x, 2, index), x.new_zeros(()))


def rand_slice_segments(
    x: torch.Tensor,
    lengths: torch.Tensor | None,
    size: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random window of `size` frames inside each item's valid length (official rule).

    `ids_start = floor(U[0,1) * (length - size + 1))`; an item shorter than `size` starts at 0 (and is
    zero-padded by `slice_segments`).

    Args:
        x: `(B, C, T)`.
        lengths: `(B,)` valid lengths, or None for T.
        size: window length.
        generator: optional RNG (CPU generator for `torch.rand`, device of x otherwise).

    Returns:
        (`(B, C, size)` windows, `(B,)` int64 start indices).
    """
    b, _, t = x.shape
    if lengths is None:
        lengths = torch.full((b,), t, dtype=torch.long, device=x.device)
    max_start = (lengths.to(x.device) - size + 1).clamp_min(1)
    rand_device = generator.device if generator is not None else x.device
    u = torch.rand(b, generator=generator, device=rand_device).to(x.device)
    ids_start = (u * max_start).to(torch.long)
    return slice_segments(x, ids_start, size), ids_start


def gated_activation(x: torch.Tensor, n_channels: int) -> torch.Tensor:
    """WaveNet gate: `tanh(x[:, :n]) * sigmoid(x[:, n:])`, `(B, 2n, T) -> (B, n, T)`."""
    return torch.tanh(x[:, :n_channels]) * torch.sigmoid(x[:, n_channels:])
