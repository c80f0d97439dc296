"""Reading every kind of SoVITS weight file into one typed view.

Kinds (see docs in the package ``__init__``):

- ``official-export``: ``{"weight": fp16 generator weights without enc_q, "config": utils.HParams or dict,
  "info": "<e>epoch_<s>iteration"}``, header ``PK`` / ``05`` / ``06`` (also what `export_best` writes);
- ``pretrained``: ``{"weight": ...}`` files such as s2G2333k.pth / s2D2333k.pth (generator keeps enc_q);
- ``official-training``: ``G_<step>.pth`` / ``D_<step>.pth`` = ``{"model", "optimizer", "iteration",
  "learning_rate"}`` (``iteration`` is the epoch);
- ``run-checkpoint``: our ``fit`` checkpoints (``format == "gsv-train-checkpoint"``);
- ``safetensors-export``: our ``--format safetensors`` export (config/info in the metadata);
- ``state-dict``: a bare ``torch.save(model.state_dict())``.

All torch files are read with `load_torch_file` (weights_only + the ``utils.HParams`` alias).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from gptsovits_train.checkpoints.serialization import FileKind, load_torch_file, sniff_file, to_plain
from gptsovits_train.config import Config, ConfigError, config_from_dict
from gptsovits_train.errors import CheckpointError

LOG = logging.getLogger(__name__)

RUN_CHECKPOINT_FORMAT = "gsv-train-checkpoint"
RUN_CHECKPOINT_FORMAT_VERSION = 1
SAFETENSORS_EXPORT_FORMAT = "gsv-train-export"
#: Official "save latest" training checkpoints always use this fake step number.
OFFICIAL_LATEST_STEP = 233333333333

SourceKind = Literal[
    "official-export", "pretrained", "official-training", "run-checkpoint", "safetensors-export", "state-dict"
]
Role = Literal["generator", "discriminator"]

_INFO = re.compile(r"^(?P<epoch>\d+)epoch_(?P<step>\d+)iteration$")
_TRAINING_NAME = re.compile(r"^[GD]_(?P<step>\d+)\.pth$")


@dataclass
class RunCheckpoint:
    """A checkpoint written by `gsv-train fit` (see the brief's run-checkpoint contract).

    `generator`/`discriminator`: fp32 state dicts; `best`: {"epoch","step","metric","value"} or None;
    `state`: the whole loaded dict (optimizer, scheduler, rng, ... for resuming).
    """

    path: Path
    generator: dict[str, torch.Tensor]
    discriminator: dict[str, torch.Tensor] | None
    epoch: int
    step: int
    metrics: dict[str, float]
    best: dict[str, Any] | None
    config: Config
    tool_version: str
    state: dict[str, Any] = field(repr=False)


@dataclass
class WeightsFile:
    """One SoVITS weight file, whatever its kind, reduced to what export/inspect need.

    `state`: the generator or discriminator tensors as stored (dtype untouched);
    `config`: plain nested dict (official layout) or None; `our_config`: our `Config` (run checkpoints
    and our exports) or None; `epoch`/`step`: None when the file does not say.
    """

    path: Path
    kind: SourceKind
    role: Role
    state: dict[str, torch.Tensor]
    file: FileKind
    config: dict[str, Any] | None = None
    our_config: Config | None = None
    info: str | None = None
    epoch: int | None = None
    step: int | None = None
    run: RunCheckpoint | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_elements(self) -> int:
        return sum(int(t.numel()) for t in self.state.values())

    @property
    def dtypes(self) -> dict[str, int]:
        """dtype name -> number of tensors."""
        out: dict[str, int] = {}
        for t in self.state.values():
            name = str(t.dtype).removeprefix("torch.")
            out[name] = out.get(name, 0) + 1
        return out


def parse_info(info: str | None) -> tuple[int | None, int | None]:
    """``"8epoch_100iteration"`` -> (8, 100); anything else -> (None, None)."""
    if isinstance(info, str):
        m = _INFO.match(info.strip())
        if m:
            return int(m.group("epoch")), int(m.group("step"))
    return None, None


def _as_tensor_dict(obj: Any, name: str, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{name}: '{what}' is not a non-empty dict of tensors")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{name}: '{what}' holds non-tensor entries, e.g. {bad[0]!r}")
    return dict(obj)


def state_role(state: Mapping[str, Any], name: str = "weights") -> Role:
    """ "generator" (SynthesizerTrn keys) or "discriminator" (MultiPeriodDiscriminator keys)."""
    if any(k.startswith(("enc_p.", "dec.", "flow.")) for k in state):
        return "generator"
    if any(k.startswith("discriminators.") for k in state):
        return "discriminator"
    sample = ", ".join(list(state)[:3])
    raise CheckpointError(f"{name}: neither SoVITS generator nor discriminator weights (keys: {sample}, ...)")


def read_run_checkpoint(path: Path | str) -> RunCheckpoint:
    """Read a `fit` checkpoint (``last.pt``/``best.pt``/``epoch_XXXX.pt``).

    Raises `CheckpointError` if the file is not one (or is unreadable).
    """
    path = Path(path)
    obj = load_torch_file(path)
    if not isinstance(obj, dict) or obj.get("format") != RUN_CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a gsv-train run checkpoint (no format '{RUN_CHECKPOINT_FORMAT}')")
    return _run_checkpoint(path, obj)


def _run_checkpoint(path: Path, obj: dict[str, Any]) -> RunCheckpoint:
    version = obj.get("format_version")
    if version != RUN_CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: run checkpoint format_version {version!r} is not supported "
            f"(this gsv-train reads version {RUN_CHECKPOINT_FORMAT_VERSION})"
        )
    missing = [k for k in ("generator", "epoch", "step", "config") if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: run checkpoint lacks {', '.join(missing)}")
    try:
        config = config_from_dict(obj["config"], origin=f"{path} [config]")
    except ConfigError as exc:
        raise CheckpointError(f"{path}: the config stored in the checkpoint is invalid: {exc}") from None
    disc = obj.get("discriminator")
    best = obj.get("best")
    metrics = obj.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise CheckpointError(f"{path}: 'metrics' is not a dict")
    return RunCheckpoint(
        path=path,
        generator=_as_tensor_dict(obj["generator"], str(path), "generator"),
        discriminator=_as_tensor_dict(disc, str(path), "discriminator") if disc is not None else None,
        epoch=int(obj["epoch"]),
        step=int(obj["step"]),
        metrics={str(k): float(v) for k, v in metrics.items() if isinstance(v, int | float)},
        best=dict(best) if isinstance(best, dict) else None,
        config=config,
        tool_version=str(obj.get("tool_version", "unknown")),
        state=obj,
    )


def embedded_our_config(config: Mapping[str, Any] | None, name: str) -> Config | None:
    """Our `Config` stored by gsv-train in an export's config (``config["gsv_train"]["config"]``), if any."""
    if not isinstance(config, Mapping):
        return None
    section = config.get("gsv_train")
    if not isinstance(section, Mapping) or not isinstance(section.get("config"), Mapping):
        return None
    try:
        return config_from_dict(dict(section["config"]), origin=f"{name} [config.gsv_train]")
    except ConfigError as exc:
        raise CheckpointError(
            f"{name}: the gsv-train config stored in the export is invalid: {exc}"
        ) from None


def _read_safetensors(path: Path, kind: FileKind) -> WeightsFile:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = dict(fh.metadata() or {})
            state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors file ({exc})") from None
    if not state:
        raise CheckpointError(f"{path}: safetensors file holds no tensors")
    config: dict[str, Any] | None = None
    if "config" in metadata:
        try:
            loaded = json.loads(metadata["config"])
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: safetensors metadata 'config' is not JSON ({exc})") from None
        config = loaded if isinstance(loaded, dict) else None
    info = metadata.get("info")
    epoch, step = parse_info(info)
    ours = metadata.get("format") == SAFETENSORS_EXPORT_FORMAT
    role = state_role(state, str(path))
    return WeightsFile(
        path=path,
        kind="safetensors-export" if ours else "state-dict",
        role=role,
        state=state,
        file=kind,
        config=config,
        our_config=embedded_our_config(config, str(path)),
        info=info,
        epoch=epoch,
        step=step,
        extra={"metadata": metadata},
    )


def read_weights(path: Path | str) -> WeightsFile:
    """Read any supported SoVITS weight file (see module docstring) into a `WeightsFile`.

    Raises `CheckpointError` (one clear line) for missing, empty, truncated, corrupt, foreign or unsafe files.
    """
    path = Path(path)
    kind = sniff_file(path)
    if kind.container == "safetensors":
        return _read_safetensors(path, kind)
    obj = load_torch_file(path)
    name = str(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{name}: holds a {type(obj).__name__}, not a dict of weights")

    if obj.get("format") == RUN_CHECKPOINT_FORMAT:
        run = _run_checkpoint(path, obj)
        return WeightsFile(
            path=path,
            kind="run-checkpoint",
            role="generator",
            state=run.generator,
            file=kind,
            our_config=run.config,
            info=f"{run.epoch}epoch_{run.step}iteration",
            epoch=run.epoch,
            step=run.step,
            run=run,
        )

    if "model" in obj and "iteration" in obj:
        state = _as_tensor_dict(obj["model"], name, "model")
        step: int | None = None
        m = _TRAINING_NAME.match(path.name)
        if m and int(m.group("step")) != OFFICIAL_LATEST_STEP:
            step = int(m.group("step"))
        return WeightsFile(
            path=path,
            kind="official-training",
            role=state_role(state, name),
            state=state,
            file=kind,
            epoch=int(obj["iteration"]),
            step=step,
            extra={
                "learning_rate": obj.get("learning_rate"),
                "has_optimizer": obj.get("optimizer") is not None,
            },
        )

    if "weight" in obj:
        state = _as_tensor_dict(obj["weight"], name, "weight")
        role = state_role(state, name)
        raw_config = obj.get("config")
        config = to_plain(raw_config) if isinstance(raw_config, dict) else None
        if raw_config is not None and config is None:
            raise CheckpointError(f"{name}: 'config' is a {type(raw_config).__name__}, not a dict")
        info = obj.get("info")
        info = str(info) if info is not None else None
        epoch, step = parse_info(info)
        has_enc_q = any("enc_q" in k for k in state)
        is_export = role == "generator" and not has_enc_q and config is not None
        extra = {k: obj[k] for k in obj if k not in ("weight", "config", "info")}
        return WeightsFile(
            path=path,
            kind="official-export" if is_export else "pretrained",
            role=role,
            state=state,
            file=kind,
            config=config,
            our_config=embedded_our_config(config, name),
            info=info,
            epoch=epoch,
            step=step,
            extra=extra,
        )

    if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        state = dict(obj)
        return WeightsFile(path=path, kind="state-dict", role=state_role(state, name), state=state, file=kind)

    keys = ", ".join(repr(k) for k in list(obj)[:6])
    raise CheckpointError(f"{name}: not a SoVITS weight file (top-level keys: {keys})")
