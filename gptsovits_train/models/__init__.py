"""SoVITS generator and discriminator (our implementation, official state-dict layout), and builders.

```python
from gptsovits_train.models import build_generator, build_discriminator, GeneratorOutput
G = build_generator("v2")                               # official v2 structure, random init
G = build_generator("v2", hidden_channels=16, ...)      # tiny variants: any ModelConfig/AudioConfig field
G = build_generator_from_config(cfg.model, cfg.audio)   # same code path
D = build_discriminator("v2")
```

A randomly initialised generator has an uninitialised RVQ codebook (`inited == 0`, as the official
model before its k-means init); load pretrained weights, or pass `random_codebook=True` /
call `G.quantizer.initialize_random_()`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch

from gptsovits_train.config import AudioConfig, ConfigError, ModelConfig, SoVITSVersion
from gptsovits_train.models.discriminator import PERIODS_PRO, PERIODS_V2, MultiPeriodDiscriminator
from gptsovits_train.models.generator import PRO_VERSIONS, GeneratorConfig, GeneratorOutput, SoVITSGenerator

LOG = logging.getLogger(__name__)

__all__ = [
    "GeneratorConfig",
    "GeneratorOutput",
    "MultiPeriodDiscriminator",
    "SoVITSGenerator",
    "build_discriminator",
    "build_discriminator_from_config",
    "build_generator",
    "build_generator_from_config",
    "discriminator_periods",
    "generator_config",
    "official_model_config",
]

_VERSION_PRESETS: dict[str, dict[str, Any]] = {
    "v1": {"version": "v1"},
    "v2": {"version": "v2"},
    "v2Pro": {"version": "v2Pro", "p_dropout": 0.0, "gin_channels": 1024},
    "v2ProPlus": {
        "version": "v2ProPlus",
        "p_dropout": 0.0,
        "gin_channels": 1024,
        "upsample_initial_channel": 768,
        "upsample_kernel_sizes": [20, 16, 8, 2, 2],
    },
}
"""Official `model` sections: s2.json (v1, v2), s2v2Pro.json, s2v2ProPlus.json (facts §4.2)."""


def _check_version(version: str) -> None:
    if version not in _VERSION_PRESETS:
        raise ConfigError(
            f"model.version: unknown SoVITS version {version!r} (known: {sorted(_VERSION_PRESETS)})"
        )


def official_model_config(version: SoVITSVersion | str = "v2") -> ModelConfig:
    """The official model hyper-parameters of a SoVITS version as a `ModelConfig`."""
    _check_version(version)
    return ModelConfig(**_VERSION_PRESETS[version])


def _split_overrides(version: str, overrides: dict[str, Any]) -> tuple[ModelConfig, AudioConfig]:
    model_fields, audio_fields = set(ModelConfig.model_fields), set(AudioConfig.model_fields)
    unknown = sorted(set(overrides) - model_fields - audio_fields)
    if unknown:
        raise TypeError(
            f"unknown model/audio override(s) {unknown}; valid: {sorted(model_fields | audio_fields)}"
        )
    if "version" in overrides:
        raise TypeError("pass the version as the first argument, not as an override")
    _check_version(version)
    model_data = dict(_VERSION_PRESETS[version])
    model_data.update({k: v for k, v in overrides.items() if k in model_fields})
    audio_data = {k: v for k, v in overrides.items() if k in audio_fields}
    try:
        return ModelConfig(**model_data), AudioConfig(**audio_data)
    except ValueError as exc:  # pydantic ValidationError
        raise ConfigError(f"invalid model/audio override: {exc}") from exc


def generator_config(model_cfg: ModelConfig, audio_cfg: AudioConfig) -> GeneratorConfig:
    """Resolve and validate the generator structure from the config sections (errors name the key)."""
    m, a = model_cfg, audio_cfg
    _check_version(m.version)
    if not m.freeze_quantizer:
        raise ConfigError(
            "model.freeze_quantizer: false is not supported "
            "(the RVQ codebook is never trained in fine-tuning)"
        )
    hop = math.prod(m.upsample_rates)
    if hop != a.hop_length:
        raise ConfigError(
            f"model.upsample_rates: product {hop} must equal audio.hop_length {a.hop_length} "
            "(one latent frame decodes to one hop of audio)"
        )
    if m.segment_size % a.hop_length != 0:
        raise ConfigError(f"model.segment_size {m.segment_size} must be a multiple of audio.hop_length")
    if m.inter_channels % 2 != 0:
        raise ConfigError(f"model.inter_channels must be even (coupling splits it), got {m.inter_channels}")
    if m.hidden_channels % m.n_heads != 0:
        raise ConfigError("model.hidden_channels must be divisible by model.n_heads")
    if m.version != "v1" and a.n_freq < 704:
        raise ConfigError(
            f"audio.filter_length {a.filter_length} gives {a.n_freq} bins; {m.version} needs >= 704 "
            "(the reference encoder reads the first 704 bins)"
        )
    if m.version not in PRO_VERSIONS and m.gin_channels % 4 != 0:
        raise ConfigError("model.gin_channels must be divisible by 4 (MRTE attention heads)")
    if len(m.resblock_kernel_sizes) != len(m.resblock_dilation_sizes):
        raise ConfigError("model.resblock_kernel_sizes and model.resblock_dilation_sizes differ in length")
    if len(m.upsample_rates) != len(m.upsample_kernel_sizes):
        raise ConfigError("model.upsample_rates and model.upsample_kernel_sizes differ in length")
    return GeneratorConfig(
        version=m.version,
        spec_channels=a.n_freq,
        segment_frames=m.segment_size // a.hop_length,
        inter_channels=m.inter_channels,
        hidden_channels=m.hidden_channels,
        filter_channels=m.filter_channels,
        n_heads=m.n_heads,
        n_layers=m.n_layers,
        kernel_size=m.kernel_size,
        p_dropout=m.p_dropout,
        resblock=m.resblock,
        resblock_kernel_sizes=tuple(m.resblock_kernel_sizes),
        resblock_dilation_sizes=tuple(tuple(d) for d in m.resblock_dilation_sizes),
        upsample_rates=tuple(m.upsample_rates),
        upsample_initial_channel=m.upsample_initial_channel,
        upsample_kernel_sizes=tuple(m.upsample_kernel_sizes),
        gin_channels=m.gin_channels,
        semantic_frame_rate=m.semantic_frame_rate,
        ssl_dim=m.ssl_dim,
        codebook_size=m.codebook_size,
        hop_length=a.hop_length,
    )


def _log_preset_differences(model_cfg: ModelConfig) -> None:
    preset = official_model_config(model_cfg.version)
    diff = {
        k: (getattr(model_cfg, k), getattr(preset, k))
        for k in ModelConfig.model_fields
        if getattr(model_cfg, k) != getattr(preset, k)
    }
    if diff:
        text = ", ".join(f"{k}={ours!r} (official {off!r})" for k, (ours, off) in sorted(diff.items()))
        LOG.info("model config differs from the official %s structure: %s", model_cfg.version, text)


def build_generator_from_config(
    model_cfg: ModelConfig,
    audio_cfg: AudioConfig,
    *,
    random_codebook: bool = False,
    seed: int | None = None,
) -> SoVITSGenerator:
    """Build the generator described by `cfg.model` / `cfg.audio` (random init, fp32, train mode).

    Args:
        random_codebook: fill the RVQ codebook randomly and mark it initialised (models that will not
            load pretrained weights: tests, benchmarks).
        seed: seed for the random init (parameters and codebook); None uses the global RNG.
    """
    _log_preset_differences(model_cfg)
    cfg = generator_config(model_cfg, audio_cfg)
    if seed is None:
        model = SoVITSGenerator(cfg)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SoVITSGenerator(cfg)
    if random_codebook:
        gen = None if seed is None else torch.Generator().manual_seed(seed + 1)
        model.quantizer.initialize_random_(gen)
    return model


def build_generator(
    version: SoVITSVersion | str = "v2",
    *,
    random_codebook: bool = False,
    seed: int | None = None,
    **overrides: Any,
) -> SoVITSGenerator:
    """Build the official structure of `version`, with any ModelConfig/AudioConfig field overridden.

    Example (tiny): `build_generator("v2", hidden_channels=16, filter_channels=32, inter_channels=8,
    n_layers=2, upsample_initial_channel=32, upsample_rates=[8, 8], upsample_kernel_sizes=[16, 16],
    gin_channels=16, hop_length=64, segment_size=512)`.
    """
    model_cfg, audio_cfg = _split_overrides(version, overrides)
    return build_generator_from_config(model_cfg, audio_cfg, random_codebook=random_codebook, seed=seed)


def discriminator_periods(version: str) -> tuple[int, ...]:
    """Periods of the period discriminators: 2,3,5,7,11 (v1/v2) plus 17,23 (v2Pro/v2ProPlus)."""
    _check_version(version)
    return PERIODS_PRO if version in PRO_VERSIONS else PERIODS_V2


def build_discriminator_from_config(
    model_cfg: ModelConfig, *, periods: Sequence[int] | None = None
) -> MultiPeriodDiscriminator:
    """Official multi-period discriminator for `model_cfg.version` (`use_spectral_norm` honoured).

    `periods` replaces the official periods; an empty sequence keeps the scale discriminator alone (the
    smallest discriminator: tiny test configs, `train.discriminator_periods: []`).
    """
    chosen = discriminator_periods(model_cfg.version) if periods is None else tuple(periods)
    if any(p < 1 for p in chosen):
        raise ConfigError(f"discriminator periods must be positive integers, got {chosen}")
    return MultiPeriodDiscriminator(chosen, use_spectral_norm=model_cfg.use_spectral_norm)


def build_discriminator(
    version: SoVITSVersion | str = "v2", *, periods: Sequence[int] | None = None, **overrides: Any
) -> MultiPeriodDiscriminator:
    """Official multi-period discriminator of `version`; overrides as `build_generator` (only
    `use_spectral_norm` affects it); `periods` replaces the official periods (tests)."""
    model_cfg, _audio = _split_overrides(version, overrides)
    return build_discriminator_from_config(model_cfg, periods=periods)
