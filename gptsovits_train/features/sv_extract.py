"""The speaker-verification stage of `prepare` (`sv/<id>.npy`, official `7-sv_cn`) and `fit`'s check.

`extract_sv_features(layout, clips, cfg)` is a post-audio stage (`data/stages.py`), registered when
`prepare.features.sv` names a model (v2Pro/v2ProPlus datasets):

- model: the official `pretrained_eres2netv2w24s4ep4.ckpt` (strict, safe load) or `random-tiny` (a small
  seeded random ERes2NetV2; the stage adds a report warning that the run checks the pipeline and makes
  no usable voice);
- per clip: read `wavs/<id>.wav` (the `5-wav32k` mix), compute the feature (`features.sv`), save it as a
  `(feature_size,)` array (float16 when computed in fp16 on CUDA, float32 on the CPU, as the official
  file) atomically, set `Clip.sv`;
- resumable: a clip whose `sv/<id>.npy` exists with the right size and finite values is not recomputed,
  and when every clip has one the model is not even loaded. `.work/sv.json` records which model made
  the files; if the model changes, the old files are deleted first, so a dataset never mixes models;
- a clip that cannot get a feature (unreadable wav, too short, non-finite output) is dropped with a
  reason in the report (`Skipped`, stage `sv`), never silently.

`fit` checks the features of a v2Pro/v2ProPlus dataset in `train.dataset.check_clip_files`.
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
from gptsovits_train.features.extract import _read_clip_wave, read_stamp_fields, restamp
from gptsovits_train.features.hubert import RANDOM_TINY
from gptsovits_train.features.sv import SV_RANDOM_NOTICE, SvFeaturizer, load_sv_model, sv_model_id, sv_wave
from gptsovits_train.fileio import atomic_save_npy
from gptsovits_train.layout import DatasetLayout

LOG = logging.getLogger(__name__)

STAGE = "sv"
STAMP_FORMAT = 1


@dataclass(frozen=True)
class SvStamp:
    """What made the `sv/` files of a dataset (`.work/sv.json`)."""

    model: str
    digest: str
    random: bool
    feature_size: int
    format: int = STAMP_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "model": self.model,
            "digest": self.digest,
            "random": self.random,
            "feature_size": self.feature_size,
            "note": SV_RANDOM_NOTICE if self.random else "ERes2NetV2 forward3 (official 7-sv_cn)",
        }

    def same_features(self, other: SvStamp) -> bool:
        return (self.digest, self.feature_size, self.format) == (
            other.digest,
            other.feature_size,
            other.format,
        )


def read_sv_stamp(layout: DatasetLayout) -> SvStamp | None:
    """The recorded sv model of a dataset, or None when there is none (or it is unreadable)."""

    def build(data: dict[str, Any]) -> SvStamp:
        return SvStamp(
            model=str(data["model"]),
            digest=str(data["digest"]),
            random=bool(data["random"]),
            feature_size=int(data["feature_size"]),
            format=int(data["format"]),
        )

    return read_stamp_fields(layout.sv_stamp, build)


def sv_problem(path: Path, feature_size: int, *, full: bool) -> str | None:
    """Why `path` is not a usable sv feature of size `feature_size`, or None when it is.

    `full` also reads the values (finite check); otherwise only the .npy header is read.
    """
    if not path.is_file():
        return "no speaker-verification feature file"
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        return f"unreadable speaker-verification feature ({exc})"
    if arr.shape != (feature_size,):
        return f"speaker-verification feature of shape {tuple(arr.shape)}, expected ({feature_size},)"
    if arr.dtype not in (np.float16, np.float32):
        return f"speaker-verification feature of dtype {arr.dtype}, expected float16/float32"
    if full and not np.isfinite(np.asarray(arr)).all():
        return "speaker-verification feature contains NaN/Inf"
    return None


def extract_sv_features(layout: DatasetLayout, clips: list[Clip], cfg: Config) -> StageResult:
    """Post-audio stage: the sv feature of every clip (see module doc).

    Returns:
        StageResult with the clips that have a feature (`Clip.sv` set; input order kept), a `Skipped`
        (stage `sv`) per dropped clip, and a warning when the model is the random one.
    Raises:
        GsvError: no model configured, weights file missing or not the official model, CUDA requested
            without a GPU.
    """
    fcfg = cfg.prepare.features
    if not fcfg.sv:
        raise GsvError(
            "no speaker-verification model for the sv stage: pass --sv FILE "
            "(pretrained_eres2netv2w24s4ep4.ckpt; `gsv-train download-pretrained --version v2Pro` "
            f"fetches it) or '{RANDOM_TINY}' for a pipeline check"
        )
    ident = sv_model_id(fcfg.sv)
    stamp = SvStamp(
        model=ident.source, digest=ident.digest, random=ident.random, feature_size=ident.feature_size
    )
    old = read_sv_stamp(layout)
    if old is None or not old.same_features(stamp):
        restamp(layout.sv_dir, layout.sv_stamp, stamp.to_dict(), old.model if old else None, "sv feature")

    warnings: list[WarningItem] = []
    if ident.random:
        warnings.append(WarningItem(STAGE, SV_RANDOM_NOTICE, STAGE))
        LOG.warning(SV_RANDOM_NOTICE)

    todo: list[Clip] = []
    for clip in clips:
        if sv_problem(layout.sv(clip.id), stamp.feature_size, full=True) is None:
            clip.sv = layout.relative(layout.sv(clip.id))
        else:
            todo.append(clip)
    LOG.info("sv features: %d of %d clips already done", len(clips) - len(todo), len(clips))
    failed: dict[str, str] = {}
    if todo:  # the model is loaded (and its keys checked) only when there is work
        failed = _compute(layout, todo, cfg, SvFeaturizer(load_sv_model(fcfg.sv), fcfg.device, fcfg.fp16))
    kept = [c for c in clips if c.id not in failed]
    skipped = [Skipped(c.id, failed[c.id], STAGE) for c in clips if c.id in failed]
    return StageResult(clips=kept, skipped=skipped, warnings=warnings)


def _compute(
    layout: DatasetLayout, todo: list[Clip], cfg: Config, featurizer: SvFeaturizer
) -> dict[str, str]:
    """Compute and save the sv features of `todo`; returns clip id → reason for the clips that failed."""
    from tqdm import tqdm

    acfg = cfg.audio
    apply_mix = not cfg.prepare.loudness.enabled
    LOG.info(
        "sv model %s on %s (%s)",
        featurizer.loaded.source,
        featurizer.device,
        "fp16" if featurizer.half else "fp32",
    )
    failed: dict[str, str] = {}
    t0 = time.perf_counter()
    for clip in tqdm(todo, unit="clip", desc="sv", disable=not sys.stderr.isatty(), leave=False):
        try:
            wave = _read_clip_wave(layout, clip, acfg.sampling_rate, acfg.hop_length)
            feats = featurizer.features(sv_wave(wave, apply_mix=apply_mix), acfg.sampling_rate)
        except ValueError as exc:
            failed[clip.id] = str(exc)
            continue
        if not np.isfinite(feats).all():
            failed[clip.id] = "speaker-verification feature is NaN/Inf"
            continue
        atomic_save_npy(layout.sv(clip.id), np.ascontiguousarray(feats))
        clip.sv = layout.relative(layout.sv(clip.id))
    dt = time.perf_counter() - t0
    LOG.info("sv features: %d clips in %.1f s, %d failed", len(todo), dt, len(failed))
    return failed
