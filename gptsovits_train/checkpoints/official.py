"""The official config layout (``hps``) and its conversion to and from our `Config`.

Official loaders read ``data.filter_length/hop_length/win_length/sampling_rate/n_speakers``,
``train.segment_size`` and the whole ``model`` section (passed as keyword arguments to the model),
plus the top-level ``version``. `official_config_from_ours` writes exactly that shape (as plain nested
dicts, never a pickled class); `model_audio_from_official` reads it back into our typed sections.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gptsovits_train import __version__
from gptsovits_train.checkpoints.version import infer_version_from_weights
from gptsovits_train.config import AudioConfig, Config, ModelConfig
from gptsovits_train.errors import CheckpointError

LOG = logging.getLogger(__name__)

#: The official ``model`` section keys, in s2.json order (`SynthesizerTrn(**hps.model)`).
OFFICIAL_MODEL_KEYS: tuple[str, ...] = (
    "inter_channels",
    "hidden_channels",
    "filter_channels",
    "n_heads",
    "n_layers",
    "kernel_size",
    "p_dropout",
    "resblock",
    "resblock_kernel_sizes",
    "resblock_dilation_sizes",
    "upsample_rates",
    "upsample_initial_channel",
    "upsample_kernel_sizes",
    "n_layers_q",
    "use_spectral_norm",
    "gin_channels",
    "semantic_frame_rate",
    "freeze_quantizer",
    "version",
)
#: The official ``data`` section keys (s2.json).
OFFICIAL_DATA_KEYS: tuple[str, ...] = (
    "max_wav_value",
    "sampling_rate",
    "filter_length",
    "hop_length",
    "win_length",
    "n_mel_channels",
    "mel_fmin",
    "mel_fmax",
    "add_blank",
    "n_speakers",
    "cleaned_text",
)
#: Config fields the official inference loaders read (besides the whole model section).
LOADER_DATA_KEYS = ("filter_length", "hop_length", "win_length", "sampling_rate", "n_speakers")

#: SoVITS versions whose generator we build (v3/v4 are a different model).
SUPPORTED_VERSIONS = ("v1", "v2", "v2Pro", "v2ProPlus")


def official_model_defaults(version: str) -> ModelConfig:
    """Our `ModelConfig` holding the official s2 configuration of `version` (v1, v2, v2Pro, v2ProPlus)."""
    if version not in SUPPORTED_VERSIONS:
        raise CheckpointError(
            f"SoVITS {version} is not supported (supported: {', '.join(SUPPORTED_VERSIONS)}); "
            "v3/v4 use a different model"
        )
    from gptsovits_train.models import official_model_config

    return official_model_config(version)


def official_config_from_ours(
    model: ModelConfig,
    audio: AudioConfig,
    *,
    name: str,
    train: Mapping[str, Any] | None = None,
    ours: Config | None = None,
) -> dict[str, Any]:
    """The ``config`` entry of an export: official ``hps`` layout as plain nested dicts.

    `train`: extra official train fields (``segment_size`` is always taken from `model`); `ours`: our
    whole config, stored under ``gsv_train`` so the export can be traced back (official loaders ignore it).
    """
    m = model.model_dump(mode="json")
    a = audio.model_dump(mode="json")
    data: dict[str, Any] = {
        "max_wav_value": a["max_wav_value"],
        "sampling_rate": a["sampling_rate"],
        "filter_length": a["filter_length"],
        "hop_length": a["hop_length"],
        "win_length": a["win_length"],
        "n_mel_channels": a["n_mel_channels"],
        "mel_fmin": a["mel_fmin"],
        "mel_fmax": a["mel_fmax"],
        "add_blank": True,
        "n_speakers": m["n_speakers"],
        "cleaned_text": True,
    }
    train_section: dict[str, Any] = dict(train or {})
    train_section["segment_size"] = m["segment_size"]
    config: dict[str, Any] = {
        "train": train_section,
        "data": data,
        "model": {k: m[k] for k in OFFICIAL_MODEL_KEYS},
        "content_module": "cnhubert",
        "name": name,
        "version": m["version"],
    }
    if ours is not None:
        config["gsv_train"] = {"tool_version": __version__, "config": ours.to_dict()}
    return config


def train_section_from_ours(cfg: Config, batch_size: int | None = None) -> dict[str, Any]:
    """Official ``train`` fields that have an exact counterpart in our config.

    `batch_size`: the size a run actually used (its `batch_size: auto` choice); without it an "auto"
    setting leaves the official integer field out."""
    t = cfg.train
    size = batch_size if batch_size is not None else t.batch_size
    out = {
        "seed": t.seed,
        "epochs": t.epochs,
        "learning_rate": t.learning_rate,
        "betas": list(t.betas),
        "eps": t.eps,
        "batch_size": size,
        "c_mel": t.c_mel,
        "c_kl": t.c_kl,
        "text_low_lr_rate": t.text_low_lr_rate,
        "pretrained_s2G": t.pretrained_s2G or "",
        "pretrained_s2D": t.pretrained_s2D or "",
    }
    if size == "auto":
        del out["batch_size"]
    return out


def model_audio_from_official(
    config: Mapping[str, Any] | None, weight: Mapping[str, Any]
) -> tuple[ModelConfig, AudioConfig, str]:
    """Our (model, audio) sections for an official file, and where they came from.

    The version follows the weights (as the official loaders do: Pro keys / 322-row text embedding);
    without a config the official defaults of that version are used. Raises `CheckpointError` when the
    config is malformed.
    """
    version = infer_version_from_weights(weight)
    if config is None:
        return (
            official_model_defaults(version),
            AudioConfig(),
            f"official {version} defaults (file has no config)",
        )
    model_sec = config.get("model")
    data_sec = config.get("data")
    if not isinstance(model_sec, Mapping) or not isinstance(data_sec, Mapping):
        raise CheckpointError("official config lacks its 'model' or 'data' section")
    stated = model_sec.get("version", config.get("version"))
    if stated is not None and stated != version:
        LOG.warning(
            "config says version %s but the weights are %s; using %s (official loader rule)",
            stated,
            version,
            version,
        )
    fields = set(ModelConfig.model_fields)
    model_kwargs = {k: copy.deepcopy(v) for k, v in model_sec.items() if k in fields}
    ignored = sorted(k for k in model_sec if k not in fields)
    if ignored:
        LOG.debug("official model keys without a counterpart (ignored): %s", ignored)
    model_kwargs["version"] = version
    if "n_speakers" in data_sec:
        model_kwargs["n_speakers"] = data_sec["n_speakers"]
    train_sec = config.get("train")
    if isinstance(train_sec, Mapping) and "segment_size" in train_sec:
        model_kwargs["segment_size"] = train_sec["segment_size"]
    audio_kwargs = {k: data_sec[k] for k in AudioConfig.model_fields if k in data_sec}
    try:
        base = official_model_defaults(version).model_dump()
        base.update(model_kwargs)
        return ModelConfig(**base), AudioConfig(**audio_kwargs), "config stored in the file"
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CheckpointError(f"official config is invalid at '{where}': {first['msg']}") from None


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON form of an export config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def find_training_config(path: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """The ``config.json`` official training writes to ``logs/<exp>/`` (``G_*.pth`` live one level below,
    in ``logs_s2_<ver>/``): (config, its path), or (None, None) when there is none."""
    for candidate in (path.parent / "config.json", path.parent.parent / "config.json"):
        if candidate.is_file():
            try:
                loaded = json.loads(candidate.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise CheckpointError(f"{candidate}: not valid JSON ({exc})") from None
            if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
                return loaded, candidate
            LOG.warning("%s has no 'model' section; ignored", candidate)
    return None, None
