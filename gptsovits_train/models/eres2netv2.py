"""ERes2NetV2, the speaker-verification network of SoVITS v2Pro/v2ProPlus (official `eres2net/`).

Official structure: ``ERes2NetV2(baseWidth=24, scale=4, expansion=4)``, everything else at its default
(``num_blocks [3, 4, 6, 3]``, ``m_channels 64``, ``feat_dim 80``, ``embedding_size 192``, TSTP pooling,
one embedding layer): 1001 state-dict keys, named and ordered as the official module (see
`../shared/reference/eres2netv2_state.json`), so the official checkpoint
``pretrained_eres2netv2w24s4ep4.ckpt`` loads strictly.

Input ``(B, T, 80)`` Kaldi fbank frames; the network sees ``(B, 1, 80, T)`` (frequency = height, time =
width). Stem: conv 3x3 → BN → ReLU. Four layers of bottleneck blocks (stride in the first block's 1x1
conv and its shortcut); layers 3 and 4 merge the branches with attentional feature fusion (AFF)
instead of addition. Activation inside the blocks: ``Hardtanh(0, 20)``.

Two outputs:

- `forward3` (the v2Pro training/inference feature, ``7-sv_cn``): ``fuse34(layer4, layer3_ds(layer3))``
  flattened over (channel, frequency) and averaged over time → ``(B, 2048 * 10) = (B, 20480)``, index
  ``channel * 10 + freq``. Signed values (``layer3_ds`` has no activation).
- `embed` (the speaker embedding, unused by the official v2Pro path): TSTP statistics (mean and unbiased
  std over time) of the same fused map → ``seg_1`` → ``(B, 192)``. Used for the speaker-similarity
  validation metric.

Smaller structures (`ERes2NetV2Config` with fewer blocks / channels) exist only for `random-tiny`
pipeline checks; their `forward3` size is ``10 * 8 * m_channels * expansion``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LOG = logging.getLogger(__name__)

#: Kaldi fbank bins the network expects.
FEAT_DIM = 80
#: Clamp of the blocks' activation (official `ReLU(nn.Hardtanh)` with max 20).
ACT_MAX = 20.0


@dataclass(frozen=True)
class ERes2NetV2Config:
    """Structure of an ERes2NetV2; the defaults are the official v2Pro sv model (w24 s4 ep4)."""

    base_width: int = 24
    scale: int = 4
    expansion: int = 4
    num_blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    m_channels: int = 64
    embedding_size: int = 192
    feat_dim: int = FEAT_DIM

    @property
    def out_channels(self) -> int:
        """Channels of the fused map (layer4 output)."""
        return self.m_channels * 8 * self.expansion

    @property
    def freq_bins(self) -> int:
        """Frequency rows of the fused map (three stride-2 stages)."""
        return math.ceil(math.ceil(math.ceil(self.feat_dim / 2) / 2) / 2)

    @property
    def feature_size(self) -> int:
        """Size of the `forward3` feature: 20480 for the official model."""
        return self.out_channels * self.freq_bins

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["num_blocks"] = list(self.num_blocks)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ERes2NetV2Config:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "num_blocks" in known:
            nb = tuple(int(x) for x in known["num_blocks"])
            if len(nb) != 4:
                raise ValueError(f"num_blocks must have 4 entries, got {nb}")
            known["num_blocks"] = nb
        return cls(**known)


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.hardtanh(x, 0.0, ACT_MAX)


class AFF(nn.Module):
    """Attentional feature fusion: ``x * a + y * (2 - a)``, ``a = 1 + tanh(att(cat(x, y)))``.

    ``att`` = 1x1 conv (2C → C/4, bias) → BN → SiLU → 1x1 conv (C/4 → C, bias) → BN, stored as
    ``local_att.{0,1,3,4}`` (index 2 is the parameter-free SiLU).
    """

    def __init__(self, channels: int, r: int = 4) -> None:
        super().__init__()
        inter = channels // r
        self.local_att = nn.Sequential(
            nn.Conv2d(channels * 2, inter, kernel_size=1),
            nn.BatchNorm2d(inter),
            nn.SiLU(),
            nn.Conv2d(inter, channels, kernel_size=1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (B, C, H, W) → (B, C, H, W)."""
        att = 1.0 + torch.tanh(self.local_att(torch.cat((x, y), dim=1)))
        return torch.mul(x, att) + torch.mul(y, 2.0 - att)


class ERes2NetV2Block(nn.Module):
    """One bottleneck block: 1x1 conv → `scale` chained 3x3 branches → 1x1 conv, plus a shortcut.

    Branch i >= 1 first merges the previous branch output with its own chunk: by addition, or by
    `AFF(previous, chunk)` when `fuse` (layers 3 and 4).
    """

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int,
        *,
        base_width: int,
        scale: int,
        expansion: int,
        fuse: bool,
    ) -> None:
        super().__init__()
        width = math.floor(planes * (base_width / 64.0))
        self.width = width
        self.scale = scale
        self.conv1 = nn.Conv2d(in_planes, width * scale, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False) for _ in range(scale)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale))
        self.fuse_models = nn.ModuleList(AFF(width, r=4) for _ in range(scale - 1)) if fuse else None
        out = planes * expansion
        self.conv3 = nn.Conv2d(width * scale, out, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) → (B, planes * expansion, ceil(H / stride), ceil(W / stride))."""
        chunks = torch.split(_act(self.bn1(self.conv1(x))), self.width, dim=1)
        branch = chunks[0]
        outs: list[torch.Tensor] = []
        for i, conv in enumerate(self.convs):
            if i > 0:
                branch = (
                    self.fuse_models[i - 1](branch, chunks[i])
                    if self.fuse_models is not None
                    else branch + chunks[i]
                )
            branch = _act(self.bns[i](conv(branch)))
            outs.append(branch)
        out = self.bn3(self.conv3(torch.cat(outs, dim=1)))
        out = out + self.shortcut(x)
        return _act(out)


class ERes2NetV2(nn.Module):
    """The speaker-verification network (see module doc). Keep it in `eval()` mode."""

    def __init__(self, cfg: ERes2NetV2Config | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or ERes2NetV2Config()
        m = cfg.m_channels
        self.conv1 = nn.Conv2d(1, m, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m)
        self._in_planes = m
        self.layer1 = self._make_layer(m, cfg.num_blocks[0], 1, fuse=False)
        self.layer2 = self._make_layer(m * 2, cfg.num_blocks[1], 2, fuse=False)
        self.layer3 = self._make_layer(m * 4, cfg.num_blocks[2], 2, fuse=True)
        self.layer4 = self._make_layer(m * 8, cfg.num_blocks[3], 2, fuse=True)
        c3, c4 = m * 4 * cfg.expansion, m * 8 * cfg.expansion
        self.layer3_ds = nn.Conv2d(c3, c4, kernel_size=3, padding=1, stride=2, bias=False)
        self.fuse34 = AFF(c4, r=4)
        stats_dim = (cfg.feat_dim // 8) * m * 8 * cfg.expansion
        self.seg_1 = nn.Linear(stats_dim * 2, cfg.embedding_size)

    def _make_layer(self, planes: int, blocks: int, stride: int, *, fuse: bool) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(
                ERes2NetV2Block(
                    self._in_planes,
                    planes,
                    s,
                    base_width=self.cfg.base_width,
                    scale=self.cfg.scale,
                    expansion=self.cfg.expansion,
                    fuse=fuse,
                )
            )
            self._in_planes = planes * self.cfg.expansion
        return nn.Sequential(*layers)

    def fused_map(self, fbank: torch.Tensor) -> torch.Tensor:
        """(B, T, 80) fbank → (B, C4, 10, T8) fused map, T8 = ceil(ceil(ceil(T/2)/2)/2)."""
        x = fbank.permute(0, 2, 1).unsqueeze(1)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out3 = self.layer3(out)
        out4 = self.layer4(out3)
        return self.fuse34(out4, self.layer3_ds(out3))

    def forward3(self, fbank: torch.Tensor) -> torch.Tensor:
        """(B, T, 80) → (B, C4 * 10) time-averaged fused map (the official v2Pro sv feature)."""
        return self.fused_map(fbank).flatten(start_dim=1, end_dim=2).mean(-1)

    def embed(self, fbank: torch.Tensor) -> torch.Tensor:
        """(B, T, 80) → (B, embedding_size) speaker embedding (official `forward`, TSTP + `seg_1`).

        Needs T8 >= 2 time steps (about T >= 9 frames) for the unbiased std.
        """
        fused = self.fused_map(fbank)
        mean = fused.mean(dim=-1).flatten(start_dim=1)
        std = torch.sqrt(torch.var(fused, dim=-1) + 1e-8).flatten(start_dim=1)
        return self.seg_1(torch.cat((mean, std), dim=1))

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        """Same as `embed`."""
        return self.embed(fbank)


def seeded_random_state(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A deterministic random state dict for `model` (random-tiny models and parity fixtures).

    The recipe of `sv_fixture.npz` (`fixtures_meta.json`), key by key in `state_dict()` order (key i):
    ``u = rand(shape, Generator().manual_seed(seed + i)) * 2 - 1`` (float32), then
    ``num_batches_tracked`` → 0 (no draw); ``running_mean`` → ``0.1 u``; ``running_var`` → ``1 + 0.25 u``;
    a 1-D ``weight`` (BatchNorm gamma) → ``1 + 0.1 u``; a BatchNorm ``bias`` → ``0.1 u``; any other bias
    → ``0.05 u``; a weight of ndim >= 2 → ``u * sqrt(3 / fan_in)``. Keeps BatchNorm statistics and
    activations in a healthy range, unlike an untrained default init in eval mode.
    """
    ref = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for i, (key, tensor) in enumerate(ref.items()):
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(0, dtype=torch.int64)
            continue
        shape = tuple(tensor.shape)
        gen = torch.Generator().manual_seed(seed + i)
        u = torch.rand(shape, generator=gen, dtype=torch.float32) * 2 - 1
        module = key.rsplit(".", 1)[0]
        if key.endswith("running_mean"):
            out[key] = 0.1 * u
        elif key.endswith("running_var"):
            out[key] = 1 + 0.25 * u
        elif len(shape) >= 2:
            out[key] = u * 1.0 * math.sqrt(3 / math.prod(shape[1:]))
        elif key.endswith(".weight"):
            out[key] = 1 + 0.1 * u
        elif key.endswith(".bias"):
            out[key] = 0.1 * u if f"{module}.running_mean" in ref else 0.05 * u
        else:
            raise KeyError(f"no recipe for state key {key!r}")
    return out
