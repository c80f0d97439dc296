"""The feature stage of `prepare` (`ssl/<id>.npy`) and the feature check `prepare` and `fit` share.

`extract_features(layout, clips, cfg)` is a post-audio stage (`data/stages.py`):

- model: `cfg.prepare.features.hubert`, a chinese-hubert-base folder, or `random-tiny` (a seeded random
  HuBERT built once in `<dataset>/.work/random-hubert/`; the stage then adds a report warning that the
  run checks the pipeline and makes no usable voice);
- per clip: read `wavs/<id>.wav`, make the official HuBERT input (`hubert.hubert_input`), run the model in
  length-sorted batches (`hubert.HubertFeaturizer`), align to the spectrogram frame count
  (`hubert.align_to_spec`), save (768, n_frames) float16 atomically, set `Clip.ssl`;
- resumable: a clip whose `ssl/<id>.npy` exists with the right shape, dtype and finite values is not
  recomputed, and when every clip has one the model is not even loaded. `.work/features.json` records
  which model made the files; if the model changes, the old files are deleted before new ones are made,
  so a dataset never mixes features of two models;
- per-clip problems skip the clip with a reason (unreadable wav, wav/manifest disagreement, too short for
  HuBERT, output not finite even in fp32, frame counts that do not align).

`feature_problems(layout, clips)` is the one feature check: `check_features` (raises one `GsvError` naming
the clips whose features are missing or do not match their spectrogram, and what to run) and `fit`'s
dataset check (`train.dataset.check_clip_files`) both use it, and both warn about random-HuBERT features
(`warn_if_random_features`).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gptsovits_train.config import Config
from gptsovits_train.data.manifest import Clip
from gptsovits_train.data.report_types import Skipped, WarningItem
from gptsovits_train.data.stages import StageResult
from gptsovits_train.errors import GsvError
from gptsovits_train.features.hubert import (
    HUBERT_INPUT_SCALE,
    HUBERT_WINDOW,
    RANDOM_NOTICE,
    RANDOM_TINY,
    FeatureAlignmentError,
    HubertFeaturizer,
    align_to_spec,
    check_hubert_folder,
    ensure_random_hubert,
    hubert_input,
    length_batches,
    load_hubert,
    model_digest,
)
from gptsovits_train.fileio import atomic_save_npy, atomic_write_json
from gptsovits_train.layout import DatasetLayout

LOG = logging.getLogger(__name__)

STAGE = "features"
STAMP_FORMAT = 1


@dataclass(frozen=True)
class FeatureStamp:
    """What made the `ssl/` files of a dataset (`.work/features.json`)."""

    model: str
    digest: str
    random: bool
    hidden_size: int
    input_scale: float = HUBERT_INPUT_SCALE
    format: int = STAMP_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "model": self.model,
            "digest": self.digest,
            "random": self.random,
            "hidden_size": self.hidden_size,
            "input_scale": self.input_scale,
            "dtype": "float16",
            "note": RANDOM_NOTICE if self.random else "chinese-hubert-base last_hidden_state, official input",
        }

    def same_features(self, other: FeatureStamp) -> bool:
        return (self.digest, self.hidden_size, self.input_scale, self.format) == (
            other.digest,
            other.hidden_size,
            other.input_scale,
            other.format,
        )


def read_stamp(layout: DatasetLayout) -> FeatureStamp | None:
    """The recorded feature model of a dataset, or None when there is none (or it is unreadable)."""
    import json

    path = layout.features_stamp
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return FeatureStamp(
            model=str(data["model"]),
            digest=str(data["digest"]),
            random=bool(data["random"]),
            hidden_size=int(data["hidden_size"]),
            input_scale=float(data["input_scale"]),
            format=int(data["format"]),
        )
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        LOG.warning("ignoring unreadable %s (%s)", path, exc)
        return None


def ssl_problem(path: Path, n_frames: int, hidden_size: int, *, full: bool) -> str | None:
    """Why `path` is not usable as the features of a clip with `n_frames` frames, or None when it is.

    `full` also reads the values (finite check); otherwise only the .npy header is read.
    """
    if not path.is_file():
        return "no features file"
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        return f"unreadable features file ({exc})"
    if arr.ndim != 2 or arr.shape[0] != hidden_size:
        return f"features of shape {tuple(arr.shape)}, expected ({hidden_size}, {n_frames})"
    if arr.shape[1] != n_frames:
        return f"features have {arr.shape[1]} frames, the spectrogram has {n_frames}"
    if arr.dtype not in (np.float16, np.float32):
        return f"features of dtype {arr.dtype}, expected float16"
    if full and not np.isfinite(np.asarray(arr)).all():
        return "features contain NaN/Inf"
    return None


def _resolve_model(layout: DatasetLayout, cfg: Config) -> Path:
    fcfg = cfg.prepare.features
    if not fcfg.hubert:
        raise GsvError(
            "no HuBERT model for the feature stage: pass --hubert DIR (chinese-hubert-base; "
            f"`gsv-train download-pretrained` fetches it) or set prepare.features.hubert ('{RANDOM_TINY}' "
            "for a pipeline check)"
        )
    if fcfg.hubert == RANDOM_TINY:
        return ensure_random_hubert(layout.random_hubert_dir, fcfg.hidden_size)
    return Path(fcfg.hubert).expanduser()


def _read_clip_wave(layout: DatasetLayout, clip: Clip, sample_rate: int, hop: int) -> np.ndarray:
    """(L,) float32 in [-1, 1] of a dataset clip; ValueError with the reason when it does not fit."""
    import soundfile as sf

    path = layout.root / clip.path
    try:
        data, sr = sf.read(str(path), dtype="int16", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise ValueError(f"cannot read {clip.path} ({exc})") from None
    if data.ndim != 1:
        raise ValueError(f"{clip.path} is not mono")
    if sr != sample_rate:
        raise ValueError(f"{clip.path} is {sr} Hz, expected {sample_rate}")
    if len(data) // hop != clip.n_frames:
        raise ValueError(
            f"{clip.path} has {len(data)} samples ({len(data) // hop} frames) but the manifest says "
            f"{clip.n_frames} frames; run prepare again"
        )
    return data.astype(np.float32) / np.float32(32768.0)


def extract_features(layout: DatasetLayout, clips: list[Clip], cfg: Config) -> StageResult:
    """Post-audio stage: HuBERT features for every clip (see module doc).

    Returns:
        StageResult with the clips that have features (`Clip.ssl` set; input order kept), a `Skipped`
        (stage `features`) per dropped clip, and a warning when the model is the random one.
    Raises:
        GsvError: no model configured, model folder unusable, CUDA requested without a GPU.
    """
    fcfg = cfg.prepare.features
    hidden = fcfg.hidden_size
    model_dir = _resolve_model(layout, cfg)
    check_hubert_folder(model_dir, hidden)
    is_random = fcfg.hubert == RANDOM_TINY
    stamp = FeatureStamp(
        model=RANDOM_TINY if is_random else str(model_dir.absolute()),
        digest=model_digest(model_dir),
        random=is_random,
        hidden_size=hidden,
    )
    old = read_stamp(layout)
    if old is None or not old.same_features(stamp):
        stale = sorted(layout.ssl_dir.glob("*.npy")) if layout.ssl_dir.is_dir() else []
        if stale:
            LOG.warning(
                "%d feature files in %s were made by another model (%s); recomputing them",
                len(stale),
                layout.ssl_dir,
                old.model if old else "unknown",
            )
            for f in stale:
                f.unlink()
        atomic_write_json(layout.features_stamp, stamp.to_dict())

    warnings: list[WarningItem] = []
    if is_random:
        warnings.append(WarningItem(STAGE, RANDOM_NOTICE, STAGE))
        LOG.warning(RANDOM_NOTICE)

    todo: list[Clip] = []
    for clip in clips:
        if ssl_problem(layout.ssl(clip.id), clip.n_frames, hidden, full=True) is None:
            clip.ssl = layout.relative(layout.ssl(clip.id))
        else:
            todo.append(clip)
    LOG.info("features: %d of %d clips already done", len(clips) - len(todo), len(clips))
    failed: dict[str, str] = {}
    if todo:
        failed = _compute(layout, todo, cfg, model_dir)
    kept = [c for c in clips if c.id not in failed]
    skipped = [Skipped(c.id, failed[c.id], STAGE) for c in clips if c.id in failed]
    return StageResult(clips=kept, skipped=skipped, warnings=warnings)


def _compute(layout: DatasetLayout, todo: list[Clip], cfg: Config, model_dir: Path) -> dict[str, str]:
    """Compute and save features of `todo`; returns clip id → reason for the clips that failed."""
    from tqdm import tqdm

    fcfg = cfg.prepare.features
    acfg = cfg.audio
    loaded = load_hubert(model_dir, fcfg.hidden_size)
    featurizer = HubertFeaturizer(loaded, fcfg.device, fcfg.fp16)
    LOG.info(
        "HuBERT %s on %s (%s), batch %d",
        RANDOM_TINY if loaded.random else model_dir,
        featurizer.device,
        "fp16" if featurizer.half else "fp32",
        fcfg.batch_size,
    )
    apply_mix = not cfg.prepare.loudness.enabled
    failed: dict[str, str] = {}
    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), unit="clip", desc="features", disable=not sys.stderr.isatty(), leave=False)
    n_done = 0
    for batch in length_batches([c.n_samples for c in todo], fcfg.batch_size):
        clips = [todo[i] for i in batch]
        ready: list[tuple[Clip, np.ndarray]] = []
        for clip in clips:
            try:
                wave = _read_clip_wave(layout, clip, acfg.sampling_rate, acfg.hop_length)
            except ValueError as exc:
                failed[clip.id] = str(exc)
                continue
            x16 = hubert_input(wave, apply_mix=apply_mix, sample_rate=acfg.sampling_rate)
            if len(x16) < HUBERT_WINDOW:
                failed[clip.id] = f"too short for HuBERT ({len(wave)} samples)"
                continue
            ready.append((clip, x16))
        outs = featurizer([x for _, x in ready]) if ready else []
        for (clip, _), feats in zip(ready, outs, strict=True):
            if feats is None:
                failed[clip.id] = "HuBERT output is NaN/Inf even in fp32"
                continue
            try:
                aligned = align_to_spec(feats, clip.n_frames)
            except FeatureAlignmentError as exc:
                failed[clip.id] = str(exc)
                continue
            atomic_save_npy(layout.ssl(clip.id), np.ascontiguousarray(aligned, dtype=np.float16))
            clip.ssl = layout.relative(layout.ssl(clip.id))
        n_done += len(clips)
        bar.update(len(clips))
    bar.close()
    dt = time.perf_counter() - t0
    LOG.info(
        "features: %d clips in %.1f s (%.2f clips/s), %d retried in fp32, %d failed",
        n_done,
        dt,
        n_done / dt if dt > 0 else 0.0,
        featurizer.n_retried,
        len(failed),
    )
    return failed


def feature_problems(
    layout: DatasetLayout, clips: list[Clip], *, hidden_size: int = 768
) -> list[tuple[str, str]]:
    """`(clip id, reason)` for every clip whose HuBERT features are missing or do not match its spectrogram.

    The one feature check of the project: `check_features` (prepare) and `fit`'s dataset check
    (`train.dataset.check_clip_files`) both use it. Reads only the .npy headers (fast).
    """
    problems: list[tuple[str, str]] = []
    for clip in clips:
        if not clip.ssl:
            problems.append((clip.id, "no features"))
            continue
        reason = ssl_problem(layout.root / clip.ssl, clip.n_frames, hidden_size, full=False)
        if reason:
            problems.append((clip.id, reason))
    return problems


def warn_if_random_features(layout: DatasetLayout) -> bool:
    """Log (and return True) when the dataset's features come from the random HuBERT (`random-tiny`)."""
    stamp = read_stamp(layout)
    if stamp is not None and stamp.random:
        LOG.warning("%s: %s", layout.root, RANDOM_NOTICE)
        return True
    return False


def check_features(
    layout: DatasetLayout, clips: list[Clip], *, hidden_size: int = 768, max_listed: int = 5
) -> None:
    """Refuse a dataset whose HuBERT features are missing or do not match the spectrograms.

    Reads only the .npy headers (fast). Logs a warning when the features come from the random HuBERT.

    Raises:
        GsvError: one line naming up to `max_listed` bad clips with their reason, the total count, and
            the command that repairs the dataset.
    """
    problems = feature_problems(layout, clips, hidden_size=hidden_size)
    if problems:
        listed = "; ".join(f"{cid}: {why}" for cid, why in problems[:max_listed])
        more = f"; and {len(problems) - max_listed} more" if len(problems) > max_listed else ""
        raise GsvError(
            f"{len(problems)} of {len(clips)} clips in {layout.root} have no usable HuBERT features "
            f"({listed}{more}). "
            f"Run `gsv-train prepare` again into {layout.root} with --hubert DIR (chinese-hubert-base; "
            "`gsv-train download-pretrained` fetches it): it resumes and computes only what is missing"
        )
    warn_if_random_features(layout)
