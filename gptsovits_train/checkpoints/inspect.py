"""`gsv-train inspect`: what a SoVITS weight file is, by the official rules and against our models."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gptsovits_train.checkpoints.files import WeightsFile, read_weights
from gptsovits_train.checkpoints.official import find_training_config, model_audio_from_official
from gptsovits_train.checkpoints.state_dict import (
    EXPORT_DROPPED_PATTERNS,
    KeyReport,
    compare_state_dicts,
    load_state_dict_strict,
)
from gptsovits_train.checkpoints.version import (
    OfficialVersion,
    detect_sovits_version,
    loader_version,
    size_rule_note,
)
from gptsovits_train.config import AudioConfig, ModelConfig
from gptsovits_train.errors import CheckpointError

LOG = logging.getLogger(__name__)

_EXPORT_KINDS = ("official-export", "safetensors-export")


def build_generator_for(
    model: ModelConfig, audio: AudioConfig, device: str | torch.device = "cpu"
) -> nn.Module:
    """Our generator for these sections (``device="meta"``: shapes only).

    An invalid structure raises `CheckpointError` naming the config key.
    """
    from gptsovits_train.config import ConfigError
    from gptsovits_train.models import build_generator_from_config

    try:
        with torch.device(device):
            return build_generator_from_config(model, audio)
    except ConfigError as exc:
        raise CheckpointError(
            f"cannot build a {model.version} generator from the file's config: {exc}"
        ) from None


@functools.lru_cache(maxsize=8)
def _generator_shapes(model_json: str, audio_json: str) -> dict[str, tuple[int, ...]]:
    model = ModelConfig.model_validate_json(model_json)
    audio = AudioConfig.model_validate_json(audio_json)
    generator = build_generator_for(model, audio, "meta")
    return {k: tuple(v.shape) for k, v in generator.state_dict().items()}


def expected_generator_shapes(model: ModelConfig, audio: AudioConfig) -> dict[str, tuple[int, ...]]:
    """Key -> shape of our generator for these sections (built once per config on the meta device)."""
    return dict(_generator_shapes(model.model_dump_json(), audio.model_dump_json()))


def generator_key_report(
    model: ModelConfig, audio: AudioConfig, weight: Mapping[str, Any], *, exported: bool
) -> KeyReport:
    """Compare `weight` with our generator's keys and shapes, without building it in memory.

    `exported`: the official export rule applies, so keys containing ``enc_q`` may be absent.
    """
    allow = EXPORT_DROPPED_PATTERNS if exported else ()
    return compare_state_dicts(expected_generator_shapes(model, audio), weight, allow_missing=allow)


def load_into_generator(
    model: ModelConfig, audio: AudioConfig, weight: Mapping[str, torch.Tensor], *, exported: bool, what: str
) -> tuple[nn.Module, KeyReport]:
    """Build our generator from the sections and load `weight` into it strictly (CPU).

    `exported`: the official export rule applies, so keys containing ``enc_q`` may be absent (they keep
    the random init). Raises `CheckpointError` with the key report on any other difference.
    """
    generator = build_generator_for(model, audio, "cpu")
    allow = EXPORT_DROPPED_PATTERNS if exported else ()
    report = load_state_dict_strict(generator, weight, allow_missing=allow, what=what)
    return generator, report


@dataclass
class InspectReport:
    """Everything `gsv-train inspect` prints.

    `official`: the official detection (None for safetensors, which the official UI cannot read);
    `version`: the version the official loaders end up using (or the one implied by the weights);
    `load_report`: strict key comparison with our model (None if it could not be built, see `load_error`).
    """

    path: Path
    kind: str
    role: str
    size_bytes: int
    container: str
    header: str
    official: OfficialVersion | None
    official_error: str | None
    version: str
    n_keys: int
    dtypes: dict[str, int]
    info: str | None
    epoch: int | None
    step: int | None
    n_elements: int
    n_parameters: int | None
    n_buffer_elements: int | None
    config_source: str
    load_report: KeyReport | None
    load_error: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def loads(self) -> bool:
        return self.load_report is not None and self.load_report.ok

    def lines(self) -> list[str]:
        """Human-readable report, one fact per line."""
        out = [
            f"file:        {self.path} ({self.size_bytes:,} bytes, {self.size_bytes / 1024:,.1f} KiB)",
            f"kind:        {self.kind} ({self.role})",
            f"container:   {self.container}, first bytes {self.header!r}",
        ]
        if self.official is not None:
            o = self.official
            lora = ", LoRA" if o.is_lora else ""
            out.append(
                f"official:    model {o.model_version}, symbols {o.symbols_version}{lora} (by {o.rule})"
            )
        else:
            out.append(f"official:    not detectable ({self.official_error})")
        out.append(f"version:     {self.version}")
        note = size_rule_note(self.official, self.version) if self.official is not None else None
        if note is not None:
            out.append(f"note:        {note}")
        dtypes = ", ".join(f"{k} x{v}" for k, v in sorted(self.dtypes.items()))
        out.append(f"keys:        {self.n_keys} ({dtypes})")
        out.append(f"info:        {self.info if self.info is not None else '-'}")
        ep = "-" if self.epoch is None else str(self.epoch)
        st = "-" if self.step is None else str(self.step)
        out.append(f"epoch/step:  {ep} / {st}")
        if self.n_parameters is not None:
            out.append(
                f"parameters:  {self.n_parameters:,} (+ {self.n_buffer_elements or 0:,} buffer elements; "
                f"{self.n_elements:,} tensor elements in the file)"
            )
        else:
            out.append(
                f"elements:    {self.n_elements:,} tensor elements (parameters unknown: model not built)"
            )
        out.append(f"config:      {self.config_source}")
        if self.load_report is not None:
            verdict = "yes" if self.load_report.ok else "NO"
            out.append(f"loads into our {self.role} (strict): {verdict} - {self.load_report.summary()}")
        else:
            out.append(f"loads into our {self.role} (strict): NO - {self.load_error}")
        return out


def _model_sections(wf: WeightsFile) -> tuple[ModelConfig, AudioConfig, str]:
    if wf.our_config is not None:
        where = "checkpoint" if wf.kind == "run-checkpoint" else "export"
        return wf.our_config.model, wf.our_config.audio, f"gsv-train config stored in the {where}"
    config, found = wf.config, None
    if config is None and wf.kind == "official-training":
        config, found = find_training_config(wf.path)
    model, audio, how = model_audio_from_official(config, wf.state)
    return model, audio, f"official training config {found}" if found is not None else how


def inspect_weights(path: Path | str, *, load: bool = True) -> InspectReport:
    """Inspect a SoVITS file: official version, keys, dtypes, info, parameter count, strict loadability.

    `load`: actually load the weights into a freshly built model (CPU); otherwise only compare keys and
    shapes against a meta-device model. Raises `CheckpointError` for unreadable/unsafe files.
    """
    path = Path(path)
    wf = read_weights(path)
    official: OfficialVersion | None = None
    official_error: str | None = None
    if wf.file.container == "safetensors":
        official_error = "safetensors files are not read by the official GPT-SoVITS loaders"
    else:
        try:
            official = detect_sovits_version(path)
        except CheckpointError as exc:
            official_error = str(exc)

    load_report: KeyReport | None = None
    load_error: str | None = None
    n_parameters: int | None = None
    n_buffers: int | None = None
    version = "unknown"
    config_source = "-"
    try:
        if wf.role == "generator":
            model_cfg, audio_cfg, config_source = _model_sections(wf)
            version = model_cfg.version
            if official is not None and wf.kind in ("official-export", "pretrained"):
                version = loader_version(official, wf.state)
            exported = wf.kind in _EXPORT_KINDS
            allow = EXPORT_DROPPED_PATTERNS if exported else ()
            model = build_generator_for(model_cfg, audio_cfg, "cpu" if load else "meta")
        else:
            version = _discriminator_version(wf.state)
            config_source = "discriminator periods from the weights"
            allow = ()
            model = _build_discriminator(version, "cpu" if load else "meta")
        param_names = {n for n, _ in model.named_parameters()}
        n_parameters = sum(int(t.numel()) for k, t in wf.state.items() if k in param_names)
        n_buffers = sum(int(t.numel()) for k, t in wf.state.items() if k not in param_names)
        load_report = compare_state_dicts(model.state_dict(), wf.state, allow_missing=allow)
        if load and load_report.ok:
            load_report = load_state_dict_strict(model, wf.state, allow_missing=allow, what=str(path))
    except CheckpointError as exc:
        load_error = str(exc)

    return InspectReport(
        path=path,
        kind=wf.kind,
        role=wf.role,
        size_bytes=wf.file.size,
        container=wf.file.container,
        header=wf.file.header_text,
        official=official,
        official_error=official_error,
        version=version,
        n_keys=len(wf.state),
        dtypes=wf.dtypes,
        info=wf.info,
        epoch=wf.epoch,
        step=wf.step,
        n_elements=wf.n_elements,
        n_parameters=n_parameters,
        n_buffer_elements=n_buffers,
        config_source=config_source,
        load_report=load_report,
        load_error=load_error,
        extra=wf.extra,
    )


def _build_discriminator(version: str, device: str) -> nn.Module:
    from gptsovits_train.models import build_discriminator

    with torch.device(device):
        return build_discriminator(version=version)


def _discriminator_version(state: Mapping[str, Any]) -> str:
    """v2 discriminators have 6 sub-discriminators (S + periods 2,3,5,7,11), Pro ones 8 (+17, 23)."""
    indices = {
        int(k.split(".")[1]) for k in state if k.startswith("discriminators.") and k.split(".")[1].isdigit()
    }
    return "v2Pro" if len(indices) > 6 else "v2"
