"""Semantic tokens of the GPT stage (`semantic/<id>.npy`), as the official `3-get-semantic.py` makes them.

Official recipe (gpt-stage facts §3): per clip, the un-padded HuBERT features `(1, 768, T_hubert)` go
through the **frozen** `ssl_proj` (Conv1d 768→768, kernel 2, stride 2) and the RVQ quantizer (1 layer,
1024 codes, eval mode: nearest code by squared Euclidean distance) of the **pretrained** s2G;
`codes[0, 0, :]` are the 25 Hz tokens, ``T25 = T_hubert // 2`` (an odd T drops its last frame).
Fine-tuning never changes `ssl_proj`/quantizer, so a fine-tuned SoVITS file gives the same codes.

Our dataset stores HuBERT features aligned to the spectrogram (`ssl/<id>.npy`, one frame longer than
HuBERT's own output when `n_samples mod 640 < 159`, see `features.hubert.align_to_spec`). The stage
therefore crops them back to ``T_hubert = expected_frames(n_samples)`` before projecting, so the codes
are those of the official un-padded `4-cnhubert` file.

Public API:
    SemanticModel                  ssl_proj + quantizer, `codes(list of (D, T) arrays)`
    semantic_model_from_state      build it from any SoVITS generator state dict (official key names)
    load_semantic_model            from a SoVITS file: pretrained s2G, official export, gsv-train checkpoint
    random_semantic_model          seeded random weights (`random-tiny`: pipeline check only)
    extract_semantic               the post-audio stage of `prepare` (see `data/stages.py`)
    semantic_problem               why a stored codes file is not usable (None when it is)

Precision: fp32 by default (exact nearest codes on every device; the official CPU behaviour);
`prepare.semantic.fp16` runs fp16 on CUDA like the official half-precision GPU path (≈2 % of codes differ
from fp32 on the reference fixture). Batching: clips are zero-padded to an even common length; a
kernel-2/stride-2 convolution never mixes two output frames, so padding changes no code (tested).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gptsovits_train.config import Config
from gptsovits_train.data.manifest import Clip
from gptsovits_train.data.report_types import WarningItem
from gptsovits_train.data.stages import StageResult, drop_failed, remove_unlisted
from gptsovits_train.errors import GsvError
from gptsovits_train.features.hubert import RANDOM_TINY, expected_frames, resolve_device
from gptsovits_train.fileio import atomic_save_npy, atomic_write_json
from gptsovits_train.layout import DatasetLayout
from gptsovits_train.models.quantizer import ResidualVectorQuantizer

LOG = logging.getLogger(__name__)

STAGE = "semantic"
STAMP_FORMAT = 1
PROJ_WEIGHT = "ssl_proj.weight"
PROJ_BIAS = "ssl_proj.bias"
CODEBOOK_PREFIX = "quantizer.vq.layers."
RANDOM_SEMANTIC_NOTICE = (
    "semantic codes come from a RANDOM ssl_proj + quantizer (prepare.semantic.model: random-tiny): this run "
    "checks the pipeline and does not make a usable voice; use the pretrained s2G "
    "(gsv-train download-pretrained) for real training"
)


class SemanticModelError(GsvError):
    """The SoVITS file holds no usable `ssl_proj` + quantizer."""


class SemanticModel(nn.Module):
    """Frozen `ssl_proj` + RVQ quantizer of a SoVITS generator (official state-dict names).

    Args:
        ssl_dim: HuBERT feature size (768).
        codebook_size: codes per layer (1024).
        stride: `ssl_proj` kernel = stride (2 for 25 Hz tokens, 1 for 50 Hz).
        n_q: quantizer layers (1 officially; only the first layer's codes are the tokens).
    """

    def __init__(self, ssl_dim: int = 768, codebook_size: int = 1024, stride: int = 2, n_q: int = 1) -> None:
        super().__init__()
        self.ssl_dim = ssl_dim
        self.codebook_size = codebook_size
        self.stride = stride
        self.ssl_proj = nn.Conv1d(ssl_dim, ssl_dim, stride, stride=stride)
        self.quantizer = ResidualVectorQuantizer(dimension=ssl_dim, n_q=n_q, bins=codebook_size)
        self.requires_grad_(False)
        self.eval()

    def project(self, ssl: torch.Tensor) -> torch.Tensor:
        """`(B, ssl_dim, T)` → `(B, ssl_dim, T // stride)` (the official `ssl_proj` output)."""
        with torch.no_grad():
            return self.ssl_proj(ssl.to(self.ssl_proj.weight.dtype))

    def forward(self, ssl: torch.Tensor) -> torch.Tensor:
        """`(B, ssl_dim, T)` → `(B, T // stride)` int64 codes of the first quantizer layer."""
        with torch.no_grad():
            return self.quantizer.encode(self.project(ssl))[0]

    def codes(
        self, feats: Sequence[np.ndarray | torch.Tensor], dtype: torch.dtype | None = None
    ) -> list[np.ndarray]:
        """Codes of several clips in one batched pass.

        Args:
            feats: per clip `(ssl_dim, T_i)` un-padded HuBERT features (any float dtype), T_i >= stride.
            dtype: compute dtype (default: the model's).
        Returns:
            per clip `(T_i // stride,)` int64 codes.
        """
        if not feats:
            return []
        p = self.ssl_proj.weight
        dtype = dtype or p.dtype
        lengths = [int(f.shape[-1]) // self.stride for f in feats]
        t_max = max(lengths) * self.stride
        batch = torch.zeros(len(feats), self.ssl_dim, t_max, dtype=dtype, device=p.device)
        for i, f in enumerate(feats):
            x = torch.as_tensor(np.asarray(f)) if isinstance(f, np.ndarray) else f
            if x.dim() != 2 or x.shape[0] != self.ssl_dim:
                raise ValueError(f"features must have shape ({self.ssl_dim}, T), got {tuple(x.shape)}")
            n = lengths[i] * self.stride
            batch[i, :, :n] = x[:, :n].to(device=p.device, dtype=dtype)
        codes = self(batch).cpu().numpy()
        return [np.ascontiguousarray(codes[i, :n], dtype=np.int64) for i, n in enumerate(lengths)]

    def digest(self) -> str:
        """sha256 of the weights that decide the codes (fp32 values: an fp16 export and the fp32 checkpoint
        of the same model give the same digest)."""
        h = hashlib.sha256()
        for key, t in sorted(self.state_dict().items()):
            if key.endswith(("cluster_size", "embed_avg")):
                continue
            h.update(key.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()


def semantic_model_from_state(state: Mapping[str, torch.Tensor], name: str = "weights") -> SemanticModel:
    """Build a `SemanticModel` from a SoVITS generator state dict (other keys are ignored).

    Needs `ssl_proj.weight (D, D, k)`, `ssl_proj.bias (D,)` and `quantizer.vq.layers.{i}._codebook.embed
    (K, D)`; an `inited` buffer of 0 (a codebook that was never initialised) is refused.

    Raises:
        SemanticModelError: keys missing, inconsistent shapes or an uninitialised codebook.
    """
    weight, bias = state.get(PROJ_WEIGHT), state.get(PROJ_BIAS)
    embeds = sorted(k for k in state if k.startswith(CODEBOOK_PREFIX) and k.endswith("._codebook.embed"))
    if weight is None or bias is None or not embeds:
        raise SemanticModelError(
            f"{name}: no ssl_proj/quantizer weights (need {PROJ_WEIGHT}, {PROJ_BIAS} and "
            f"{CODEBOOK_PREFIX}0._codebook.embed); give a SoVITS generator file (s2G)"
        )
    if weight.dim() != 3 or weight.shape[0] != weight.shape[1] or bias.shape != weight.shape[:1]:
        raise SemanticModelError(f"{name}: {PROJ_WEIGHT} has shape {tuple(weight.shape)}, expected (D, D, k)")
    dim, stride = int(weight.shape[0]), int(weight.shape[2])
    embed0 = state[embeds[0]]
    if embed0.dim() != 2 or embed0.shape[1] != dim:
        raise SemanticModelError(
            f"{name}: codebook of shape {tuple(embed0.shape)} does not fit ssl_proj ({dim})"
        )
    model = SemanticModel(dim, int(embed0.shape[0]), stride, n_q=len(embeds))
    own = model.state_dict()
    picked: dict[str, torch.Tensor] = {}
    for key, target in own.items():
        value = state.get(key)
        if value is None:
            if key.endswith("._codebook.inited"):
                value = torch.ones_like(target)  # the official files all have it; only `embed` decides codes
            elif key.endswith(("cluster_size", "embed_avg")):
                value = torch.zeros_like(target)  # not used for encoding
            else:
                raise SemanticModelError(f"{name}: {key} missing")
        if tuple(value.shape) != tuple(target.shape):
            raise SemanticModelError(
                f"{name}: {key} has shape {tuple(value.shape)}, expected {tuple(target.shape)}"
            )
        picked[key] = value.detach().to("cpu", target.dtype)
    model.load_state_dict(picked, strict=True)
    if not model.quantizer.is_initialized():
        raise SemanticModelError(
            f"{name}: the quantizer codebook was never initialised (inited == 0); this is not a trained s2G"
        )
    return model


def load_semantic_model(path: Path | str) -> SemanticModel:
    """`SemanticModel` of a SoVITS generator file (any kind `checkpoints.read_weights` reads, safe loading).

    Raises:
        SemanticModelError / CheckpointError: unreadable file, discriminator weights, no quantizer.
    """
    from gptsovits_train.checkpoints import read_weights

    path = Path(path).expanduser()
    if not path.is_file():
        raise SemanticModelError(f"SoVITS file not found: {path} (prepare.semantic.model)")
    wf = read_weights(path)
    if wf.role != "generator":
        raise SemanticModelError(
            f"{path} holds {wf.role} weights; the semantic codes need the generator (s2G)"
        )
    return semantic_model_from_state(wf.state, str(path))


def random_semantic_model(ssl_dim: int = 768, codebook_size: int = 1024, seed: int = 0) -> SemanticModel:
    """Seeded random `ssl_proj` (PyTorch default init) + codebook (`initialize_random_`): pipeline checks."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SemanticModel(ssl_dim, codebook_size)
    model.quantizer.initialize_random_(torch.Generator().manual_seed(seed + 1))
    return model


# ------------------------------------------------------------------------------------------- stage
@dataclass(frozen=True)
class SemanticStamp:
    """What made the `semantic/` files (`.work/semantic.json`): weights, HuBERT features, precision."""

    model: str
    digest: str
    features_digest: str | None
    fp16: bool
    random: bool
    format: int = STAMP_FORMAT

    def key(self) -> tuple[Any, ...]:
        return (self.digest, self.features_digest, self.fp16, self.format)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "model": self.model,
            "digest": self.digest,
            "features_digest": self.features_digest,
            "fp16": self.fp16,
            "random": self.random,
            "note": RANDOM_SEMANTIC_NOTICE if self.random else "ssl_proj + quantizer of a SoVITS generator",
        }


def read_semantic_stamp(layout: DatasetLayout) -> SemanticStamp | None:
    path = layout.semantic_stamp
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        fd = d["features_digest"]
        return SemanticStamp(
            model=str(d["model"]),
            digest=str(d["digest"]),
            features_digest=None if fd is None else str(fd),
            fp16=bool(d["fp16"]),
            random=bool(d["random"]),
            format=int(d["format"]),
        )
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        LOG.warning("ignoring unreadable %s (%s)", path, exc)
        return None


def resolve_semantic_source(cfg: Config) -> str:
    """The SoVITS file (or `random-tiny`) that makes the codes: `prepare.semantic.model`, else
    `train.pretrained_s2G`, else the downloaded pretrained s2G of `model.version`.

    Raises:
        GsvError: none of them is available (the message says what to do).
    """
    if cfg.prepare.semantic.model:
        return cfg.prepare.semantic.model
    if cfg.train.pretrained_s2G:
        return cfg.train.pretrained_s2G
    from gptsovits_train.pretrained import find_pretrained

    found = find_pretrained(version=cfg.model.version)
    if found is not None and found.s2g is not None:
        LOG.info("semantic codes: using the downloaded pretrained s2G %s", found.s2g)
        return str(found.s2g)
    raise GsvError(
        "the GPT stage needs a SoVITS generator for the semantic codes: set prepare.semantic.model to the "
        "pretrained s2G (`gsv-train download-pretrained` fetches it) or to a SoVITS checkpoint/export, "
        f"or '{RANDOM_TINY}' for a pipeline check"
    )


def semantic_problem(path: Path, n_codes: int, codebook_size: int) -> str | None:
    """Why `path` is not the codes file of a clip with `n_codes` codes, or None when it is usable."""
    if not path.is_file():
        return "no semantic codes file"
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return f"unreadable semantic codes file ({exc})"
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        return f"semantic codes of shape {arr.shape} {arr.dtype}, expected ({n_codes},) integers"
    if arr.shape[0] != n_codes:
        return f"{arr.shape[0]} semantic codes, the HuBERT features give {n_codes}"
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= codebook_size):
        return f"semantic codes outside [0, {codebook_size})"
    return None


def _clip_ssl(layout: DatasetLayout, clip: Clip, cfg: Config) -> np.ndarray:
    """The clip's un-padded HuBERT features `(D, T_hubert)`; ValueError with the reason when unusable."""
    if not clip.ssl:
        raise ValueError("no HuBERT features (ssl) for this clip")
    try:
        ssl = np.load(layout.root / clip.ssl, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"unreadable HuBERT features {clip.ssl} ({exc})") from None
    t_hubert = expected_frames(clip.n_samples, cfg.audio.sampling_rate)
    hidden = cfg.prepare.features.hidden_size
    if ssl.ndim != 2 or ssl.shape[0] != hidden:
        raise ValueError(f"HuBERT features of shape {ssl.shape}, expected ({hidden}, T)")
    if ssl.shape[1] not in (t_hubert, t_hubert + 1):
        raise ValueError(
            f"HuBERT features have {ssl.shape[1]} frames; {clip.n_samples} samples give {t_hubert} "
            "(the features were not computed from this clip; run prepare again)"
        )
    if not np.isfinite(ssl).all():
        raise ValueError("HuBERT features contain NaN/Inf")
    return ssl[:, :t_hubert]


def _newer(path: Path, than: Path) -> bool:
    try:
        return path.stat().st_mtime_ns >= than.stat().st_mtime_ns
    except OSError:
        return False


def extract_semantic(layout: DatasetLayout, clips: list[Clip], cfg: Config) -> StageResult:
    """Post-audio stage: 25 Hz semantic codes for every clip (`Clip.semantic`; see module doc).

    Needs the HuBERT features (`Clip.ssl`, the feature stage). Resumable: a clip whose codes file exists,
    is newer than its features and has the right length is kept; `.work/semantic.json` records the weights
    and the HuBERT model behind the codes, and a change of either deletes the old codes first.

    Raises:
        GsvError: no SoVITS file available or not usable, or CUDA requested without a GPU.
    """
    from gptsovits_train.features.extract import read_stamp

    scfg = cfg.prepare.semantic
    if clips and not any(c.ssl for c in clips):
        raise GsvError(
            "the GPT stage makes its semantic codes from the HuBERT features, and no clip has any: "
            "pass --hubert DIR (chinese-hubert-base; `gsv-train download-pretrained` fetches it) "
            f"or '{RANDOM_TINY}'"
        )
    source = resolve_semantic_source(cfg)
    is_random = source == RANDOM_TINY
    if is_random:
        model = random_semantic_model(cfg.prepare.features.hidden_size, cfg.model.codebook_size)
    else:
        model = load_semantic_model(source)
    if model.ssl_dim != cfg.prepare.features.hidden_size:
        raise SemanticModelError(
            f"{source}: ssl_proj takes {model.ssl_dim}-d features, prepare.features.hidden_size is "
            f"{cfg.prepare.features.hidden_size}"
        )
    device = resolve_device(scfg.device)
    half = bool(scfg.fp16 and device.type == "cuda")
    feature_stamp = read_stamp(layout)
    stamp = SemanticStamp(
        model=RANDOM_TINY if is_random else str(Path(source).expanduser().absolute()),
        digest=model.digest(),
        features_digest=feature_stamp.digest if feature_stamp else None,
        fp16=half,
        random=is_random,
    )
    old = read_semantic_stamp(layout)
    if old is None or old.key() != stamp.key():
        stale = sorted(layout.semantic_dir.glob("*.npy")) if layout.semantic_dir.is_dir() else []
        if stale:
            LOG.warning(
                "%d semantic code files in %s were made by other weights or features; recomputing them",
                len(stale),
                layout.semantic_dir,
            )
            for f in stale:
                f.unlink()
        atomic_write_json(layout.semantic_stamp, stamp.to_dict())
    warnings: list[WarningItem] = []
    if is_random:
        warnings.append(WarningItem(STAGE, RANDOM_SEMANTIC_NOTICE, STAGE))
        LOG.warning(RANDOM_SEMANTIC_NOTICE)

    failed: dict[str, str] = {}
    todo: list[Clip] = []
    for clip in clips:
        n_codes = expected_frames(clip.n_samples, cfg.audio.sampling_rate) // model.stride
        path = layout.semantic(clip.id)
        fresh = clip.ssl is not None and _newer(path, layout.root / clip.ssl)
        if fresh and semantic_problem(path, n_codes, model.codebook_size) is None:
            clip.semantic = layout.relative(path)
        else:
            todo.append(clip)
    LOG.info("semantic: %d of %d clips already done", len(clips) - len(todo), len(clips))
    if todo:
        model = model.to(device=device, dtype=torch.float16 if half else torch.float32)
        t0 = time.perf_counter()
        order = sorted(todo, key=lambda c: (-c.n_samples, c.id))
        for i in range(0, len(order), scfg.batch_size):
            ready: list[tuple[Clip, np.ndarray]] = []
            for clip in order[i : i + scfg.batch_size]:
                try:
                    ssl = _clip_ssl(layout, clip, cfg)
                except ValueError as exc:
                    failed[clip.id] = str(exc)
                    continue
                if ssl.shape[1] < model.stride:
                    failed[clip.id] = f"too short for a semantic code ({ssl.shape[1]} HuBERT frames)"
                    continue
                ready.append((clip, ssl))
            outs = model.codes([s for _, s in ready])
            for (clip, _), codes in zip(ready, outs, strict=True):
                atomic_save_npy(layout.semantic(clip.id), codes)
                clip.semantic = layout.relative(layout.semantic(clip.id))
        LOG.info(
            "semantic: %d clips in %.1f s on %s (%s)",
            len(todo),
            time.perf_counter() - t0,
            device,
            "fp16" if half else "fp32",
        )
    result = drop_failed(clips, failed, STAGE, warnings)
    remove_unlisted(layout.semantic_dir, {c.id for c in result.clips})
    return result
