"""The SoVITS generator (official `models.SynthesizerTrn`), our implementation.

Training forward (facts §5):
1. `ge = ref_enc(spec[:, :ref_bins] * mask)`; Pro versions: `ge = PReLU(ge + sv_emb(sv))` and the text
   encoder gets `ge_to512(ge)`.
2. Frozen, fp32, no gradient: `ssl_proj` (k2 s2 for 25 Hz), RVQ lookup, nearest x2 upsampling.
3. `enc_p` (prior), `enc_q` (posterior sample z), `flow` (z -> z_p), random 32-frame window of z
   through the HiFi-GAN `dec`.

State-dict keys, shapes and buffers equal the official ones (legacy `weight_g`/`weight_v`), for v1, v2,
v2Pro and v2ProPlus, all from this one class through `GeneratorConfig`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gptsovits_train.models.commons import length_mask, rand_slice_segments
from gptsovits_train.models.decoder import HiFiGANDecoder
from gptsovits_train.models.encoders import (
    MelStyleEncoder,
    PosteriorEncoder,
    TextEncoder,
    standard_normal_like,
)
from gptsovits_train.models.flow import ResidualCouplingBlock
from gptsovits_train.models.quantizer import ResidualVectorQuantizer

LOG = logging.getLogger(__name__)

PRO_VERSIONS = frozenset({"v2Pro", "v2ProPlus"})
N_SYMBOLS = {"v1": 322, "v2": 732, "v2Pro": 732, "v2ProPlus": 732}
"""Phoneme-table sizes (official `text/symbols.py` for v1, `symbols2.py` for every later version)."""
REF_BINS_V2 = 704
"""v2 and later feed only the first 704 linear-spectrogram bins to the reference encoder (v1: all)."""
SV_EMB_DIM = 20480
"""Size of the speaker-verification embedding that v2Pro/v2ProPlus take (`sv_emb` input)."""
TEXT_LOW_LR_MODULES = ("text_embedding", "encoder_text", "mrte")
"""`enc_p` children that the official step trains at `lr * text_low_lr_rate` (facts §6.3)."""
PRO_TEXT_GE_CHANNELS = 512
"""Pro versions map the style vector to 512 channels (`ge_to512`) for the text encoder's MRTE."""


@dataclass(frozen=True)
class GeneratorConfig:
    """Every hyper-parameter the generator's structure depends on (resolved from ModelConfig/AudioConfig)."""

    version: str
    spec_channels: int
    segment_frames: int
    inter_channels: int
    hidden_channels: int
    filter_channels: int
    n_heads: int
    n_layers: int
    kernel_size: int
    p_dropout: float
    resblock: str
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    upsample_rates: tuple[int, ...]
    upsample_initial_channel: int
    upsample_kernel_sizes: tuple[int, ...]
    gin_channels: int
    semantic_frame_rate: str
    ssl_dim: int
    codebook_size: int
    hop_length: int
    sv_dim: int = SV_EMB_DIM

    @property
    def is_pro(self) -> bool:
        return self.version in PRO_VERSIONS

    @property
    def n_symbols(self) -> int:
        return N_SYMBOLS[self.version]

    @property
    def ref_bins(self) -> int:
        return self.spec_channels if self.version == "v1" else REF_BINS_V2

    @property
    def text_ge_channels(self) -> int:
        """Channels of the style vector given to the MRTE (= its hidden size)."""
        return PRO_TEXT_GE_CHANNELS if self.is_pro else self.gin_channels

    @property
    def ssl_stride(self) -> int:
        return 2 if self.semantic_frame_rate == "25hz" else 1


@dataclass
class GeneratorOutput:
    """What the official training forward returns, by name (B batch, T frames, S = segment samples).

    Attributes:
        y_hat: `(B, 1, S)` decoded audio of the random window.
        kl_ssl: `()` RVQ commit loss; always 0 (frozen quantizer, as the official eval-mode RVQ).
        ids_slice: `(B,)` int64 start frame of each window (audio start = ids_slice * hop).
        x_mask, z_mask: `(B, 1, T)` frame masks (both the spectrogram mask, as officially).
        z, z_p, m_p, logs_p, m_q, logs_q: `(B, inter, T)` posterior sample, its flow image, prior and
            posterior statistics.
        stats_ssl: `(B, ssl_dim, T)` quantised SSL features after upsampling.
    """

    y_hat: torch.Tensor
    kl_ssl: torch.Tensor
    ids_slice: torch.Tensor
    x_mask: torch.Tensor
    z_mask: torch.Tensor
    z: torch.Tensor
    z_p: torch.Tensor
    m_p: torch.Tensor
    logs_p: torch.Tensor
    m_q: torch.Tensor
    logs_q: torch.Tensor
    stats_ssl: torch.Tensor


class SoVITSGenerator(nn.Module):
    """SoVITS v1/v2/v2Pro/v2ProPlus generator; build it with `build_generator*` (models/__init__.py).

    Top-level keys in official order: `enc_p`, `dec`, `enc_q`, `flow`, `ref_enc`, `ssl_proj`,
    `quantizer` and, for Pro versions, `sv_emb`, `ge_to512`, `prelu`.

    `ssl_proj` and `quantizer` are frozen: `ssl_proj` parameters have `requires_grad=False` (the official
    model leaves them trainable but they never receive a gradient, facts §6.6) and the RVQ only looks up
    codes, so its buffers never change.
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.enc_p = TextEncoder(
            cfg.inter_channels,
            cfg.hidden_channels,
            cfg.filter_channels,
            cfg.n_heads,
            cfg.n_layers,
            cfg.kernel_size,
            cfg.p_dropout,
            n_symbols=cfg.n_symbols,
            ssl_dim=cfg.ssl_dim,
            mrte_channels=cfg.text_ge_channels,
        )
        self.dec = HiFiGANDecoder(
            cfg.inter_channels,
            cfg.resblock,
            cfg.resblock_kernel_sizes,
            cfg.resblock_dilation_sizes,
            cfg.upsample_rates,
            cfg.upsample_initial_channel,
            cfg.upsample_kernel_sizes,
            gin_channels=cfg.gin_channels,
        )
        self.enc_q = PosteriorEncoder(
            cfg.spec_channels,
            cfg.inter_channels,
            cfg.hidden_channels,
            5,
            1,
            16,
            gin_channels=cfg.gin_channels,
        )
        self.flow = ResidualCouplingBlock(
            cfg.inter_channels, cfg.hidden_channels, 5, 1, 4, gin_channels=cfg.gin_channels
        )
        self.ref_enc = MelStyleEncoder(cfg.ref_bins, cfg.gin_channels)
        k = cfg.ssl_stride
        self.ssl_proj = nn.Conv1d(cfg.ssl_dim, cfg.ssl_dim, k, stride=k)
        self.quantizer = ResidualVectorQuantizer(dimension=cfg.ssl_dim, n_q=1, bins=cfg.codebook_size)
        self.sv_emb: nn.Linear | None = None
        self.ge_to512: nn.Linear | None = None
        self.prelu: nn.PReLU | None = None
        if cfg.is_pro:
            self.sv_emb = nn.Linear(cfg.sv_dim, cfg.gin_channels)
            self.ge_to512 = nn.Linear(cfg.gin_channels, PRO_TEXT_GE_CHANNELS)
            self.prelu = nn.PReLU(num_parameters=cfg.gin_channels)
        self.ssl_proj.requires_grad_(False)

    # ------------------------------------------------------------------------------- helpers
    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    @property
    def segment_frames(self) -> int:
        return self.cfg.segment_frames

    def _style(
        self, spec: torch.Tensor, spec_mask: torch.Tensor, sv_emb: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Global condition: `(ge (B, gin, 1), ge for the text encoder (B, text_ge, 1))`."""
        ge = self.ref_enc(spec[:, : self.cfg.ref_bins] * spec_mask, spec_mask)
        if self.sv_emb is None or self.prelu is None or self.ge_to512 is None:
            return ge, ge
        if sv_emb is None:
            raise ValueError(
                f"SoVITS {self.cfg.version} needs sv_emb (B, {self.cfg.sv_dim}) speaker-verification features"
            )
        if sv_emb.dim() != 2 or sv_emb.shape[1] != self.cfg.sv_dim:
            raise ValueError(f"sv_emb must have shape (B, {self.cfg.sv_dim}), got {tuple(sv_emb.shape)}")
        ge = self.prelu(ge + self.sv_emb(sv_emb).unsqueeze(-1))
        return ge, self.ge_to512(ge.transpose(1, 2)).transpose(1, 2)

    def _upsample_codes_rate(self, quantized: torch.Tensor) -> torch.Tensor:
        """Semantic rate -> spectrogram frame rate: nearest x2 for 25 Hz tokens. `(B, D, t) -> (B, D, 2t)`."""
        if self.cfg.ssl_stride == 1:
            return quantized
        return F.interpolate(quantized, size=quantized.shape[-1] * self.cfg.ssl_stride, mode="nearest")

    def _check_ssl(self, ssl: torch.Tensor) -> None:
        if ssl.dim() != 3 or ssl.shape[1] != self.cfg.ssl_dim:
            raise ValueError(f"ssl must have shape (B, {self.cfg.ssl_dim}, T), got {tuple(ssl.shape)}")

    def project_ssl(self, ssl: torch.Tensor) -> torch.Tensor:
        """Frozen `ssl_proj` without gradient and outside autocast (fp32 for an fp32 model):
        `(B, ssl_dim, T) -> (B, ssl_dim, T // stride)`."""
        self._check_ssl(ssl)
        with torch.no_grad(), torch.autocast(device_type=ssl.device.type, enabled=False):
            return self.ssl_proj(ssl.to(self.ssl_proj.weight.dtype))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters split like the official optimizer groups (facts §6.3).

        Returns:
            `{"base": [...], "text_embedding": [...], "encoder_text": [...], "mrte": [...]}`; the last three
            are the `enc_p` parts the official step trains at `lr * text_low_lr_rate`. Frozen parameters
            (`ssl_proj`) are left out.
        """
        groups: dict[str, list[nn.Parameter]] = {k: [] for k in ("base", *TEXT_LOW_LR_MODULES)}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            key = next((m for m in TEXT_LOW_LR_MODULES if name.startswith(f"enc_p.{m}.")), "base")
            groups[key].append(param)
        return groups

    # ------------------------------------------------------------------------------- training
    def forward(
        self,
        ssl: torch.Tensor,
        spec: torch.Tensor,
        spec_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        sv_emb: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> GeneratorOutput:
        """Training forward.

        Args:
            ssl: `(B, ssl_dim, T)` HuBERT features at the spectrogram frame rate (T even for 25 Hz).
            spec: `(B, spec_channels, T)` linear spectrogram.
            spec_lengths: `(B,)` int64 valid frames.
            text: `(B, Tt)` int64 phoneme ids; text_lengths `(B,)`.
            sv_emb: `(B, 20480)` speaker embedding (Pro versions only).
            generator: optional RNG for the posterior noise and the window start (default: global RNG).

        Returns:
            `GeneratorOutput` (shapes in its docstring).
        """
        self._check_ssl(ssl)
        t = spec.shape[2]
        if ssl.shape[2] != t:
            raise ValueError(f"ssl has {ssl.shape[2]} frames but spec has {t}; pad both to the same length")
        if t % self.cfg.ssl_stride != 0:
            raise ValueError(
                f"T={t} frames is not a multiple of {self.cfg.ssl_stride} (25 Hz tokens): pad the batch "
                "to an even number of frames (the official collate pads to 2*(max//2 + 1))"
            )
        y_mask = length_mask(spec_lengths, t, spec.dtype)
        ge, ge_text = self._style(spec, y_mask, sv_emb)

        projected = self.project_ssl(ssl)
        quantized, _codes, kl_ssl = self.quantizer(projected)
        quantized = self._upsample_codes_rate(quantized)

        _x, m_p, logs_p, y_mask = self.enc_p(quantized, spec_lengths, text, text_lengths, ge_text)
        z, m_q, logs_q, y_mask = self.enc_q(spec, spec_lengths, g=ge, generator=generator)
        z_p = self.flow(z, y_mask, g=ge)
        z_slice, ids_slice = rand_slice_segments(z, spec_lengths, self.cfg.segment_frames, generator)
        y_hat = self.dec(z_slice, g=ge)
        return GeneratorOutput(
            y_hat=y_hat,
            kl_ssl=kl_ssl,
            ids_slice=ids_slice,
            x_mask=y_mask,
            z_mask=y_mask,
            z=z,
            z_p=z_p,
            m_p=m_p,
            logs_p=logs_p,
            m_q=m_q,
            logs_q=logs_q,
            stats_ssl=quantized,
        )

    # ------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def extract_latent(self, ssl: torch.Tensor) -> torch.Tensor:
        """Semantic tokens of SSL features.

        Args:
            ssl: `(B, ssl_dim, T)`.

        Returns:
            `(1, B, T // 2)` int64 codes (25 Hz) in the layout `infer`/`quantizer.decode` take. (For B = 1
            this is also what the official `extract_latent` returns; for B > 1 the official method returns
            `(B, 1, T//2)`.)
        """
        return self.quantizer.encode(self.project_ssl(ssl))

    @torch.no_grad()
    def infer(
        self,
        codes: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        refer_spec: torch.Tensor,
        noise_scale: float = 0.0,
        generator: torch.Generator | None = None,
        *,
        code_lengths: torch.Tensor | None = None,
        refer_lengths: torch.Tensor | None = None,
        sv_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Synthesise audio from semantic tokens, phonemes and a reference spectrogram (official `decode`).

        Runs with dropout off (the module's train/eval mode is restored afterwards); deterministic when
        `noise_scale == 0` or when a seeded `generator` is passed.

        Args:
            codes: `(1, B, Tc)` int64 tokens (from `extract_latent`).
            text: `(B, Tt)` int64 phoneme ids; text_lengths `(B,)`.
            refer_spec: `(B or 1, spec_channels, Tr)` linear spectrogram of the reference.
            noise_scale: prior noise scale (official inference default 0.5; 0 = prior mean).
            generator: RNG for the prior noise.
            code_lengths: `(B,)` valid tokens per item (default: all Tc).
            refer_lengths: `(B or 1,)` valid reference frames (default: all Tr, as officially).
            sv_emb: `(B or 1, 20480)` speaker embedding (Pro versions only).

        Returns:
            `(B, 1, 2*Tc*hop)` audio for 25 Hz tokens (`Tc*hop` for 50 Hz). Frame f of the output covers
            spectrogram frame f of the clip the tokens came from, so its mel (center=False, as the
            spectrogram) has 2*Tc frames aligned with the first 2*Tc target frames. Samples past an item's
            `2*code_lengths*hop` come from zeroed latent frames (padding, not meaningful).
        """
        if codes.dim() != 3:
            raise ValueError(f"codes must have shape (n_q, B, T), got {tuple(codes.shape)}")
        b = codes.shape[1]
        if text.shape[0] != b:
            raise ValueError(f"text batch {text.shape[0]} != codes batch {b}")
        was_training = self.training
        self.eval()
        try:
            if refer_lengths is None:
                refer_lengths = torch.full(
                    (refer_spec.shape[0],), refer_spec.shape[2], dtype=torch.long, device=refer_spec.device
                )
            refer_mask = length_mask(refer_lengths, refer_spec.shape[2], refer_spec.dtype)
            ge, ge_text = self._style(refer_spec, refer_mask, sv_emb)
            if ge.shape[0] not in (1, b):
                raise ValueError(f"refer_spec batch {ge.shape[0]} must be 1 or {b}")
            ge, ge_text = ge.expand(b, -1, -1), ge_text.expand(b, -1, -1)

            if code_lengths is None:
                code_lengths = torch.full((b,), codes.shape[2], dtype=torch.long, device=codes.device)
            y_lengths = code_lengths.to(codes.device) * self.cfg.ssl_stride
            quantized = self._upsample_codes_rate(self.quantizer.decode(codes)).to(refer_spec.dtype)
            _x, m_p, logs_p, y_mask = self.enc_p(quantized, y_lengths, text, text_lengths, ge_text)
            z_p = m_p
            if noise_scale != 0.0:
                z_p = m_p + standard_normal_like(m_p, generator) * torch.exp(logs_p) * noise_scale
            z = self.flow(z_p, y_mask, g=ge, reverse=True)
            return self.dec(z * y_mask, g=ge)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def infer_from_ssl(
        self,
        ssl: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        refer_spec: torch.Tensor,
        noise_scale: float = 0.0,
        generator: torch.Generator | None = None,
        *,
        ssl_lengths: torch.Tensor | None = None,
        refer_lengths: torch.Tensor | None = None,
        sv_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`infer(extract_latent(ssl), ...)`; `ssl (B, ssl_dim, T)`, `ssl_lengths (B,)` frames.
        Returns `(B, 1, 2*(T//2)*hop)` audio."""
        codes = self.extract_latent(ssl)
        code_lengths = None if ssl_lengths is None else ssl_lengths // self.cfg.ssl_stride
        return self.infer(
            codes,
            text,
            text_lengths,
            refer_spec,
            noise_scale,
            generator,
            code_lengths=code_lengths,
            refer_lengths=refer_lengths,
            sv_emb=sv_emb,
        )
