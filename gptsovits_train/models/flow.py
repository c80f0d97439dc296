"""Normalising flow between the posterior latent z and the prior space z_p (official
`ResidualCouplingBlock`): `n_flows` mean-only coupling layers, each followed by a channel flip.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from gptsovits_train.models.modules import Flip, ResidualCouplingLayer

LOG = logging.getLogger(__name__)


class ResidualCouplingBlock(nn.Module):
    """Keys `flows.{0,2,4,...}` (coupling layers); the odd indices are parameter-free flips."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        n_flows: int = 4,
        gin_channels: int = 0,
    ) -> None:
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(
                ResidualCouplingLayer(
                    channels, hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=gin_channels
                )
            )
            self.flows.append(Flip())

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None = None, reverse: bool = False
    ) -> torch.Tensor:
        """`x (B, C, T)`, `x_mask (B, 1, T)`, `g (B, gin, 1)`: z -> z_p, or z_p -> z with `reverse`."""
        flows = reversed(self.flows) if reverse else iter(self.flows)
        for flow in flows:
            x = flow(x, x_mask, g=g, reverse=reverse) if isinstance(flow, ResidualCouplingLayer) else flow(x)
        return x
