"""GPT (s1) weight files: reading official/pretrained files safely, and writing the official export.

Official layout (facts §11-§13):

- export ``GPT_weights_<ver>/<name>-e<epoch>.ckpt`` = plain ``torch.save`` (first bytes ``PK``) of
  ``{"weight": every LightningModule key ("model." prefix) → fp16, "config": plain dict,
  "info": "GPT-e<epoch>"}``; the official inference loads ``weight`` strictly (the prefix is required);
- pretrained ``s1bert25hz-…ckpt`` / ``s1v3.ckpt``: a dict with the same ``weight`` entry (the official
  trainer loads it strictly into the fp32 model);
- official Lightning training checkpoints (``logs_s1_*/ckpt/epoch=…ckpt``) pickle a ``PosixPath`` and are
  refused by the safe loader: use the ``GPT_weights`` export of that epoch instead.

There is no version header for GPT files; v1 and v2 differ in ``phoneme_vocab_size`` (512 vs 732).
Every file goes through `load_torch_file` (``weights_only=True``).
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from gptsovits_train import __version__
from gptsovits_train.checkpoints.serialization import check_official_export, load_torch_file, to_plain
from gptsovits_train.checkpoints.state_dict import KeyReport, compare_state_dicts, load_state_dict_strict
from gptsovits_train.errors import CheckpointError, GsvError
from gptsovits_train.fileio import atomic_write_bytes, atomic_write_json

if TYPE_CHECKING:
    from gptsovits_train.models.t2s.decoder import T2SModelConfig

LOG = logging.getLogger(__name__)

MODEL_PREFIX = "model."
GPT_MANIFEST_FORMAT = "gsv-train-gpt-export-manifest"
GPT_PHONEME_VOCAB: dict[int, str] = {512: "v1", 732: "v2"}
_INFO = re.compile(r"^GPT-e(?P<epoch>\d+)$")

GptKind = Literal["official-export", "pretrained", "state-dict", "run-checkpoint"]


def gpt_version_from_vocab(phoneme_vocab_size: int) -> str | None:
    """ "v1" (512 phonemes) or "v2" (732; also v2Pro/v2ProPlus/v3/v4 GPT files), None otherwise."""
    return GPT_PHONEME_VOCAB.get(int(phoneme_vocab_size))


@dataclass
class GptWeightsFile:
    """One GPT weight file reduced to what loading, export and inspect need.

    `state`: tensors as stored, keys WITHOUT the ``model.`` prefix; `config`: plain dict or None;
    `epoch`: from ``info`` (``GPT-e<N>``) when present; `version`: by ``phoneme_vocab_size`` of the
    text-embedding table (None when unknown).
    """

    path: Path
    kind: GptKind
    state: dict[str, torch.Tensor]
    config: dict[str, Any] | None
    info: str | None
    epoch: int | None
    version: str | None

    @property
    def phoneme_vocab_size(self) -> int:
        return int(self.state["ar_text_embedding.word_embeddings.weight"].shape[0])

    @property
    def dtypes(self) -> list[str]:
        return sorted({str(t.dtype).removeprefix("torch.") for t in self.state.values()})


def is_gpt_state(keys: Mapping[str, Any] | list[str]) -> bool:
    """True when the keys look like a GPT (s1) state dict (with or without the ``model.`` prefix)."""
    names = list(keys)
    return any(k.removeprefix(MODEL_PREFIX) == "ar_text_embedding.word_embeddings.weight" for k in names)


def strip_model_prefix(weight: Mapping[str, Any], what: str) -> dict[str, torch.Tensor]:
    """Drop the LightningModule's ``model.`` prefix; every key must carry it (as officially)."""
    bad = [k for k in weight if not k.startswith(MODEL_PREFIX)]
    if bad:
        raise CheckpointError(
            f"{what}: {len(bad)} of {len(weight)} keys lack the official 'model.' prefix (e.g. {bad[0]!r}); "
            "the official GPT loaders would refuse this file"
        )
    out: dict[str, torch.Tensor] = {}
    for k, v in weight.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{what}: entry {k!r} is a {type(v).__name__}, not a tensor")
        out[k[len(MODEL_PREFIX) :]] = v
    return out


def read_gpt_weights(path: Path | str) -> GptWeightsFile:
    """Read an official GPT export, a pretrained s1 file or a bare GPT state dict (safe loader).

    Raises `CheckpointError` with one specific line for anything else.
    """
    path = Path(path)
    obj = load_torch_file(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a GPT weight dict")
    config: dict[str, Any] | None = None
    info: str | None = None
    kind: GptKind
    if "weight" in obj and isinstance(obj["weight"], dict):
        weight = obj["weight"]
        config = to_plain(obj["config"]) if isinstance(obj.get("config"), dict) else None
        info = obj["info"] if isinstance(obj.get("info"), str) else None
        kind = "official-export" if info is not None and _INFO.match(info) else "pretrained"
    elif isinstance(obj.get("decoder"), dict) and obj.get("stage") == "gpt":  # a gsv-train GPT run checkpoint
        model_cfg = ((obj.get("config") or {}).get("gpt") or {}).get("model")
        wf = GptWeightsFile(path, "run-checkpoint", dict(obj["decoder"]), None, None, None, None)
        if isinstance(model_cfg, dict):
            from gptsovits_train.config import GptModelConfig

            wf.config = {"model": GptModelConfig(**model_cfg).to_official()}
        wf.epoch = int(obj["epoch"]) if isinstance(obj.get("epoch"), int) else None
        wf.version = gpt_version_from_vocab(wf.phoneme_vocab_size)
        return wf
    elif "pytorch-lightning_version" in obj or "state_dict" in obj:
        raise CheckpointError(
            f"{path}: is an official Lightning training checkpoint; use the GPT_weights export of that epoch"
        )
    elif is_gpt_state(obj):
        weight, kind = obj, "state-dict"
    else:
        raise CheckpointError(f"{path}: not a GPT (s1) weight file (no 'weight' entry, no GPT keys)")
    if not is_gpt_state(weight):
        raise CheckpointError(f"{path}: its 'weight' entry holds no GPT (s1) keys (a SoVITS file?)")
    if kind == "state-dict" and not any(k.startswith(MODEL_PREFIX) for k in weight):
        state = {k: v for k, v in weight.items() if isinstance(v, torch.Tensor)}
    else:
        state = strip_model_prefix(weight, str(path))
    m = _INFO.match(info) if info else None
    wf = GptWeightsFile(path, kind, state, config, info, int(m["epoch"]) if m else None, None)
    wf.version = gpt_version_from_vocab(wf.phoneme_vocab_size)
    return wf


def load_gpt_weights_into(model: torch.nn.Module, path: Path | str) -> GptWeightsFile:
    """Strictly load a GPT file (official export or pretrained s1) into `model` (fp16 → model dtype).

    Any missing, unexpected or mis-shaped key raises `CheckpointError` naming them.
    """
    wf = read_gpt_weights(path)
    load_state_dict_strict(model, wf.state, what=f"{path} (GPT {wf.version or '?'})")
    LOG.info("loaded GPT weights %s (%s, %d tensors)", path, wf.kind, len(wf.state))
    return wf


def gpt_key_report(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> KeyReport:
    """Keys/shapes of `state` (no prefix) against `model`."""
    return compare_state_dicts(model.state_dict(), state)


# ------------------------------------------------------------------------------------------ export
def gpt_export_name(name: str, epoch: int) -> str:
    """The official naming: ``<name>-e<epoch>.ckpt``."""
    return f"{name}-e{epoch}.ckpt"


def gpt_export_weight(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official ``weight`` entry: every key with the ``model.`` prefix, fresh fp16 CPU copies."""
    return {
        MODEL_PREFIX + k: v.detach().to(device="cpu", dtype=torch.float16, copy=True).contiguous()
        for k, v in state.items()
    }


def serialize_gpt_export(weight: Mapping[str, torch.Tensor], config: Mapping[str, Any], epoch: int) -> bytes:
    """Bytes of an official GPT export (plain zip, ``PK``)."""
    buffer = io.BytesIO()
    torch.save({"weight": dict(weight), "config": dict(config), "info": f"GPT-e{epoch}"}, buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class GptExportResult:
    """What `write_gpt_export` wrote (`manifest`: the JSON written beside it)."""

    path: Path
    manifest_path: Path
    sha256: str
    size_bytes: int
    n_keys: int
    manifest: dict[str, Any]


def write_gpt_export(
    target: Path | str,
    state: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    *,
    epoch: int,
    step: int,
    best: Mapping[str, Any] | None = None,
    source: str | None = None,
    force: bool = False,
) -> GptExportResult:
    """Write ``target`` (official GPT export) and ``<target>.manifest.json``, atomically.

    `state`: the decoder's state dict (no prefix, any dtype); `config`: the official-layout config dict
    (`data.max_sec` and the `model` section are what the official inference reads); `best`: validation
    values recorded in the manifest. Refuses an existing target unless `force`.
    """
    target = Path(target)
    manifest_target = target.with_name(target.name + ".manifest.json")
    if not force:
        for p in (target, manifest_target):
            if p.exists():
                raise GsvError(f"{p} already exists; pass --force to overwrite it")
    weight = gpt_export_weight(state)
    data = serialize_gpt_export(weight, config, epoch)
    check_official_export(data, list(weight), "GPT export")
    sha256 = hashlib.sha256(data).hexdigest()
    vocab = int(state["ar_text_embedding.word_embeddings.weight"].shape[0])
    manifest: dict[str, Any] = {
        "format": GPT_MANIFEST_FORMAT,
        "format_version": 1,
        "file": target.name,
        "sha256": sha256,
        "size_bytes": len(data),
        "version": gpt_version_from_vocab(vocab),
        "info": f"GPT-e{epoch}",
        "epoch": epoch,
        "step": step,
        "best": dict(best) if best is not None else None,
        "source": source,
        "export_keys": list(weight),
        "n_keys": len(weight),
        "n_elements": sum(int(t.numel()) for t in weight.values()),
        "tool_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        raise GsvError(f"could not write {target}: {_reason(exc)}; nothing was written") from None
    try:
        atomic_write_json(manifest_target, manifest)
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise GsvError(
            f"could not write the manifest {manifest_target}: {_reason(exc)}; the export {target} was removed"
        ) from None
    LOG.info("exported GPT %s (%d keys, %.1f MB, GPT-e%d)", target, len(weight), len(data) / 1e6, epoch)
    return GptExportResult(target, manifest_target, sha256, len(data), len(weight), manifest)


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    return os.strerror(exc.errno) if exc.errno else str(exc)


# ----------------------------------------------------------------------------------------- inspect
def t2s_config_from_file(wf: GptWeightsFile) -> tuple[T2SModelConfig, str]:
    """The decoder config a GPT file needs, and where it came from.

    Its ``config["model"]`` when present, else read from the tensor shapes (the head count, which shapes
    cannot tell, then defaults to the official 16).
    """
    from gptsovits_train.models.t2s.decoder import T2SModelConfig

    model = (wf.config or {}).get("model")
    if isinstance(model, dict):
        try:
            return T2SModelConfig.from_official(model), "the file's config (model section)"
        except ValueError as exc:
            raise CheckpointError(f"{wf.path}: its config does not describe a GPT model ({exc})") from None
    try:
        hidden = int(wf.state["bert_proj.weight"].shape[0])
        vocab = int(wf.state["ar_audio_embedding.word_embeddings.weight"].shape[0])
    except KeyError as exc:
        raise CheckpointError(f"{wf.path}: GPT key {exc} missing; cannot tell the model size") from None
    layers = {int(k.split(".")[2]) for k in wf.state if k.startswith("h.layers.")}
    heads = 16 if hidden % 16 == 0 else 1
    cfg = T2SModelConfig(
        vocab_size=vocab,
        phoneme_vocab_size=wf.phoneme_vocab_size,
        embedding_dim=hidden,
        hidden_dim=hidden,
        head=heads,
        n_layer=len(layers),
        EOS=vocab - 1,
    )
    return cfg, "tensor shapes (no config in the file)"


def inspect_gpt_lines(path: Path | str, *, load: bool = True) -> tuple[list[str], bool]:
    """`gsv-train inspect` for GPT files: report lines and whether the file loads strictly."""
    from gptsovits_train.checkpoints.serialization import sniff_file
    from gptsovits_train.models.t2s.decoder import Text2SemanticDecoder

    path = Path(path)
    kind = sniff_file(path)
    wf = read_gpt_weights(path)
    dtypes: dict[str, int] = {}
    for t in wf.state.values():
        name = str(t.dtype).removeprefix("torch.")
        dtypes[name] = dtypes.get(name, 0) + 1
    n_elements = sum(int(t.numel()) for t in wf.state.values())
    lines = [
        f"file:        {path} ({kind.size:,} bytes, {kind.size / 1024:,.1f} KiB)",
        f"kind:        GPT (s1) {wf.kind}",
        f"container:   {kind.container}, first bytes {kind.header_text!r}",
        f"version:     {wf.version or 'unknown'} "
        f"(phoneme_vocab_size {wf.phoneme_vocab_size}: 512 = v1, 732 = v2)",
        f"keys:        {len(wf.state)} ({', '.join(f'{k} x{v}' for k, v in sorted(dtypes.items()))})",
        f"info:        {wf.info if wf.info is not None else '-'}",
        f"epoch:       {wf.epoch if wf.epoch is not None else '-'}",
        f"elements:    {n_elements:,}",
    ]
    ok = False
    try:
        cfg, how = t2s_config_from_file(wf)
        lines.append(
            f"config:      {how}: {cfg.n_layer} layers, {cfg.hidden_dim} dims, {cfg.head} heads, "
            f"vocab {cfg.vocab_size}/{cfg.phoneme_vocab_size}"
        )
        if (wf.config or {}).get("data", {}).get("max_sec") is None and wf.kind == "official-export":
            lines.append("warning:     config lacks data.max_sec, which the official inference reads")
        with torch.device("cpu" if load else "meta"):
            model = Text2SemanticDecoder(cfg)
        report = compare_state_dicts(model.state_dict(), wf.state)
        if load and report.ok:
            report = load_state_dict_strict(model, wf.state, what=str(path))
        ok = report.ok
        verdict = "yes" if ok else "NO"
        lines.append(f"loads into our Text2SemanticDecoder (strict): {verdict} - {report.summary()}")
    except (CheckpointError, ValueError) as exc:
        lines.append(f"loads into our Text2SemanticDecoder (strict): NO - {exc}")
    return lines, ok


def is_gpt_file(path: Path | str) -> bool:
    """True when `path` is a torch file holding GPT (s1) weights (reads it with the safe loader)."""
    try:
        obj = load_torch_file(path)
    except CheckpointError:
        return False
    if not isinstance(obj, dict):
        return False
    for entry in (obj.get("weight"), obj.get("decoder")):
        if isinstance(entry, dict):
            return is_gpt_state(entry)
    return is_gpt_state(obj)
