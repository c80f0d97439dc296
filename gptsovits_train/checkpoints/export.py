"""`gsv-train export-best`: write a trained generator in the official GPT-SoVITS export format.

The official web UI / inference code loads SoVITS weights from a file holding exactly::

    {"weight": every generator tensor whose key does not contain "enc_q", cast to fp16,
     "config": the training hps (official layout: data.*, model.*, train.segment_size, version, ...),
     "info":   "<epoch>epoch_<step>iteration"}

v1/v2 files are a plain ``torch.save`` zip (first bytes ``PK``); v2Pro/v2ProPlus files have their first
two bytes replaced by ``05``/``06`` (the official version header). The official exporter pickles
``config`` as its own ``utils.HParams`` class; we write a plain nested dict instead, which the official
loaders accept (they only index it) and which keeps the file loadable with
``torch.load(weights_only=True)`` (after putting ``PK`` back for the Pro header).

No key may be dropped: the official version detection decides v1/v2 by file size, and a full-size v2
export is only ~28 KiB above the v1 limit (82,978 KiB).

Every export gets a manifest beside it (``<file>.manifest.json``): source, epoch, step, best validation
loss, config hash, sha256 of the file and tool version. Files are written atomically; an existing output
is refused unless ``force``; a failed write leaves neither the file nor its manifest behind.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Literal

import torch

from gptsovits_train import __version__
from gptsovits_train.checkpoints.files import (
    SAFETENSORS_EXPORT_FORMAT,
    WeightsFile,
    read_weights,
)
from gptsovits_train.checkpoints.inspect import generator_key_report
from gptsovits_train.checkpoints.official import (
    config_hash,
    find_training_config,
    model_audio_from_official,
    official_config_from_ours,
    train_section_from_ours,
)
from gptsovits_train.checkpoints.serialization import check_official_export
from gptsovits_train.checkpoints.version import (
    VERSION_HEADERS,
    OfficialVersion,
    loader_version,
    version_from_header_and_size,
)
from gptsovits_train.config import AudioConfig, Config, ModelConfig
from gptsovits_train.errors import GsvError
from gptsovits_train.fileio import OutputWriteError, atomic_write_json, atomic_write_with
from gptsovits_train.layout import RunLayout

LOG = logging.getLogger(__name__)

ExportFormat = Literal["pth", "safetensors"]
MANIFEST_FORMAT = "gsv-train-export-manifest"
MANIFEST_SUFFIX = ".manifest.json"
_SUFFIX: dict[str, str] = {"pth": ".pth", "safetensors": ".safetensors"}
_CHUNK = 8 << 20
_EXPORT_NAME = re.compile(r"^(?P<name>.+)_e\d+_s\d+$")


@dataclass(frozen=True)
class ExportResult:
    """What `export_best` wrote.

    `version`: SoVITS version of the weights; `official_detection`: what the official rules say about
    the written file (pth only; None for safetensors, which the official UI does not read).
    """

    path: Path
    manifest_path: Path
    format: ExportFormat
    version: str
    epoch: int
    step: int
    info: str
    n_keys: int
    n_elements: int
    size_bytes: int
    sha256: str
    header: str
    source: Path
    source_kind: str
    best_value: float | None
    config_hash: str
    official_detection: OfficialVersion | None


@dataclass
class _Plan:
    checkpoint: Path
    run_root: Path | None
    weights: WeightsFile
    model: ModelConfig
    audio: AudioConfig
    config: dict[str, Any]
    config_source: str
    ours: Config | None
    name: str
    epoch: int
    step: int
    best: dict[str, Any] | None


def manifest_path_for(export_path: Path | str) -> Path:
    """``<file>.manifest.json`` beside an export."""
    p = Path(export_path)
    return p.with_name(p.name + MANIFEST_SUFFIX)


def default_export_name(name: str, epoch: int, step: int, fmt: ExportFormat = "pth") -> str:
    """The official naming: ``<name>_e<epoch>_s<step>.pth`` (``.safetensors`` for that format)."""
    return f"{name}_e{epoch}_s{step}{_SUFFIX[fmt]}"


# ----------------------------------------------------------------------------------------- source
def _resolve_source(source: Path) -> tuple[Path, Path | None]:
    """(checkpoint file, run root or None). A run folder resolves to its best checkpoint, never last."""
    if source.is_dir():
        layout = RunLayout(source)
        if not layout.ckpt_dir.is_dir():
            raise GsvError(f"{source} is not a run folder (it has no {layout.ckpt_dir.name}/ folder)")
        if not layout.best.is_file():
            hint = " (only last.pt exists; it is never exported)" if layout.last.is_file() else ""
            raise GsvError(
                f"run {source} has no best checkpoint {layout.best}{hint}: it is written after the first "
                "validation"
            )
        return layout.best, layout.root
    if not source.exists():
        raise GsvError(f"{source}: no such run folder or checkpoint file")
    return source, None


def _default_name(wf: WeightsFile, run_root: Path | None, config: Mapping[str, Any] | None) -> str:
    if run_root is not None:
        return run_root.name
    if config is not None and isinstance(config.get("name"), str) and config["name"].strip():
        return str(config["name"]).strip()
    if wf.kind == "official-training" and wf.path.parent.name.startswith("logs_s2"):
        return wf.path.parent.parent.name
    m = _EXPORT_NAME.match(wf.path.stem)
    return m.group("name") if m else wf.path.stem


def _plan(source: Path, name: str | None) -> _Plan:
    checkpoint, run_root = _resolve_source(source)
    wf = read_weights(checkpoint)
    if run_root is None and wf.kind == "run-checkpoint":
        candidate = RunLayout(checkpoint.parent.parent)
        if candidate.ckpt_dir.resolve() == checkpoint.parent.resolve():
            run_root = candidate.root  # <run>/checkpoints/<file>.pt
    if wf.role != "generator":
        raise GsvError(
            f"{checkpoint}: holds discriminator weights; export needs the generator (s2G / G_*.pth)"
        )

    ours: Config | None = None
    best: dict[str, Any] | None = None
    if wf.run is not None:
        ours = wf.run.config
        best = wf.run.best
        config_source = "run checkpoint config"
    else:
        ours = wf.our_config
        config_source = "gsv-train config stored in the export" if ours is not None else ""

    if ours is not None:
        model, audio = ours.model, ours.audio
        chosen = (wf.run.state.get("batch_fit") or {}).get("size") if wf.run is not None else None
        train = train_section_from_ours(ours, batch_size=chosen)
    else:
        official = wf.config
        if official is None and wf.kind == "official-training":
            official, found = find_training_config(checkpoint)
            if found is not None:
                config_source = f"official training config {found}"
        model, audio, how = model_audio_from_official(official, wf.state)
        config_source = config_source or how
        train = (
            dict(official["train"])
            if official is not None and isinstance(official.get("train"), dict)
            else {}
        )
        train.pop("segment_size", None)

    export_name = name if name is not None else _default_name(wf, run_root, wf.config)
    if not export_name or "/" in export_name or "\\" in export_name or export_name in (".", ".."):
        raise GsvError(f"invalid export name {export_name!r}: use a plain file name without folders")

    epoch, step = wf.epoch, wf.step
    if epoch is None or step is None:
        LOG.warning(
            "%s does not record its %s; using 0 in the export name and info",
            checkpoint,
            " and ".join(w for w, v in (("epoch", epoch), ("step", step)) if v is None),
        )
    config = official_config_from_ours(model, audio, name=export_name, train=train, ours=ours)
    return _Plan(
        checkpoint=checkpoint,
        run_root=run_root,
        weights=wf,
        model=model,
        audio=audio,
        config=config,
        config_source=config_source,
        ours=ours,
        name=export_name,
        epoch=epoch or 0,
        step=step or 0,
        best=best,
    )


# ---------------------------------------------------------------------------------------- writing
def export_weights(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official ``weight`` entry: every key not containing ``enc_q``, as a fresh fp16 CPU tensor.

    Order is kept. Each tensor is copied, so no view drags a larger storage into the file.
    """
    return {
        k: v.detach().to(device="cpu", dtype=torch.float16, copy=True).contiguous()
        for k, v in state.items()
        if "enc_q" not in k
    }


def serialize_export(
    weight: Mapping[str, torch.Tensor], config: Mapping[str, Any], info: str, version: str
) -> bytes:
    """Bytes of an official-format ``.pth`` export (``PK``, or ``05``/``06`` for v2Pro/v2ProPlus)."""
    buffer = io.BytesIO()
    torch.save({"weight": dict(weight), "config": dict(config), "info": info}, buffer)
    data = buffer.getvalue()
    header = VERSION_HEADERS.get(version)
    return header + data[2:] if header is not None else data


def serialize_safetensors(
    weight: Mapping[str, torch.Tensor], config: Mapping[str, Any], info: str, version: str
) -> bytes:
    """The same tensors as a safetensors file; config/info (JSON strings) in its metadata."""
    from safetensors.torch import save

    metadata = {
        "format": SAFETENSORS_EXPORT_FORMAT,
        "config": json.dumps(config, sort_keys=False),
        "info": info,
        "version": version,
    }
    return save(dict(weight), metadata=metadata)


def _write_chunks(fh: IO[bytes], data: bytes) -> None:
    view = memoryview(data)
    for start in range(0, len(view), _CHUNK):
        fh.write(view[start : start + _CHUNK])


def _write_file(target: Path, data: bytes) -> None:
    atomic_write_with(target, lambda fh: _write_chunks(fh, data))


def _os_error(target: Path, exc: OSError) -> GsvError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "no space left on device"
    return GsvError(f"could not write {target}: {reason}; nothing was written")


def _self_check(data: bytes, plan_version: str, weight: Mapping[str, torch.Tensor]) -> None:
    """Prove the bytes load with plain ``torch.load(weights_only=True)`` and hold what we meant to write."""
    check_official_export(data, list(weight), "export")
    LOG.debug("self-check ok for %s export (%d keys)", plan_version, len(weight))


def _self_check_safetensors(data: bytes, weight: Mapping[str, torch.Tensor]) -> None:
    from safetensors.torch import load

    loaded = load(data)
    if set(loaded) != set(weight) or any(t.dtype != torch.float16 for t in loaded.values()):
        raise RuntimeError("safetensors self-check failed: written tensors differ from the intended ones")


def export_best(
    source: Path | str,
    out: Path | str | None = None,
    name: str | None = None,
    fmt: ExportFormat = "pth",
    force: bool = False,
) -> ExportResult:
    """Export generator weights in the official GPT-SoVITS format.

    `source`: a run folder (its ``checkpoints/best.pt``; never ``last.pt``), any run checkpoint, an
    official ``G_*.pth``, a pretrained s2G or an official export. `out`: output file or folder (default:
    the run's ``exports/`` folder, else beside the source); `name`: export name (default: run folder name /
    official config name / file stem); `fmt`: "pth" (official) or "safetensors"; `force`: overwrite.

    Raises `GsvError` (including `CheckpointError`) with a one-line reason on any problem.
    """
    if fmt not in _SUFFIX:
        raise GsvError(f"unknown export format {fmt!r} (use pth or safetensors)")
    source = Path(source)
    plan = _plan(source, name)

    filename = default_export_name(plan.name, plan.epoch, plan.step, fmt)
    if out is None:
        base = RunLayout(plan.run_root).exports_dir if plan.run_root is not None else plan.checkpoint.parent
        target = base / filename
    else:
        is_folder = Path(out).is_dir() or str(out).endswith(("/", os.sep))
        target = Path(out) / filename if is_folder else Path(out)
    if target.suffix != _SUFFIX[fmt]:
        raise GsvError(
            f"output {target} must end in {_SUFFIX[fmt]} for --format {fmt} (or name a folder: an existing "
            "one, or end the path with '/')"
        )
    if target.exists() and target.resolve() == plan.checkpoint.resolve():
        raise GsvError(f"output {target} is the source checkpoint itself; choose another --out")
    manifest_target = manifest_path_for(target)
    if not force:
        existing = [p for p in (target, manifest_target) if p.exists()]
        if existing:
            raise GsvError(f"{existing[0]} already exists; pass --force to overwrite it")

    weight = export_weights(plan.weights.state)
    dropped = len(plan.weights.state) - len(weight)
    # the export must fit the model its own config describes (official: SynthesizerTrn(**hps.model))
    report = generator_key_report(plan.model, plan.audio, weight, exported=True)
    report.raise_if_bad(f"{plan.checkpoint}: weights for SoVITS {plan.model.version}")

    info = f"{plan.epoch}epoch_{plan.step}iteration"
    version = plan.model.version
    detection: OfficialVersion | None = None
    if fmt == "pth":
        data = serialize_export(weight, plan.config, info, version)
        _self_check(data, version, weight)
        detection = version_from_header_and_size(data[:2], len(data))
        seen = loader_version(detection, weight)
        if seen != version:
            LOG.warning(
                "official version detection will read this file as %s, not %s (%s)",
                seen,
                version,
                detection.rule,
            )
    else:
        data = serialize_safetensors(weight, plan.config, info, version)
        _self_check_safetensors(data, weight)

    sha256 = hashlib.sha256(data).hexdigest()
    best_value = float(plan.best["value"]) if plan.best and "value" in plan.best else None
    chash = config_hash(plan.config)
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "format_version": 1,
        "file": target.name,
        "file_format": fmt,
        "sha256": sha256,
        "size_bytes": len(data),
        "header": data[:2].decode("latin-1") if fmt == "pth" else None,
        "version": version,
        "official_detection": (
            {
                "symbols_version": detection.symbols_version,
                "model_version": detection.model_version,
                "is_lora": detection.is_lora,
                "rule": detection.rule,
                "loader_version": loader_version(detection, weight),
            }
            if detection is not None
            else None
        ),
        "info": info,
        "epoch": plan.epoch,
        "step": plan.step,
        "epoch_step_known": plan.weights.epoch is not None and plan.weights.step is not None,
        "best_validation_loss": best_value,
        "best": plan.best,
        "source": {"path": str(plan.checkpoint.resolve()), "kind": plan.weights.kind},
        "config_source": plan.config_source,
        "config_hash": chash,
        "run_config_digest": plan.ours.digest() if plan.ours is not None else None,
        "n_keys": len(weight),
        "n_elements": sum(int(t.numel()) for t in weight.values()),
        "dropped_enc_q_keys": dropped,
        "tool_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }

    try:
        _write_file(target, data)
    except OutputWriteError as exc:  # full disk / unwritable folder, named by the file-writing layer
        raise OutputWriteError(f"{exc}; nothing was written") from None
    except OSError as exc:
        raise _os_error(target, exc) from None
    try:
        atomic_write_json(manifest_target, manifest)
    except (OSError, OutputWriteError) as exc:
        target.unlink(missing_ok=True)  # never leave an export without its manifest
        if isinstance(exc, OutputWriteError):
            reason = str(exc)
        else:
            reason = "no space left on device" if exc.errno == errno.ENOSPC else os.strerror(exc.errno or 0)
        raise GsvError(
            f"could not write the manifest {manifest_target}: {reason}; the export {target} was removed again"
        ) from None

    LOG.info(
        "exported %s (%s, %d keys, %.1f MB, %s) from %s",
        target,
        version,
        len(weight),
        len(data) / 1e6,
        info,
        plan.checkpoint,
    )
    return ExportResult(
        path=target,
        manifest_path=manifest_target,
        format=fmt,
        version=version,
        epoch=plan.epoch,
        step=plan.step,
        info=info,
        n_keys=len(weight),
        n_elements=manifest["n_elements"],
        size_bytes=len(data),
        sha256=sha256,
        header=manifest["header"] or "",
        source=plan.checkpoint,
        source_kind=plan.weights.kind,
        best_value=best_value,
        config_hash=chash,
        official_detection=detection,
    )
