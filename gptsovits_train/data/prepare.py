"""`gsv-train prepare`: audio files + transcripts -> a dataset folder (see `layout.DatasetLayout`).

Stages, in order:

1. **sources** (`data.sources.collect_sources`): find the audio files, read transcripts, assign ids.
   Without `slice_only`, sources with no transcript are skipped ("no transcript"); when no source has
   one, the run stops here, before any audio is decoded.
2. **audio** (`process_source`, one job per source file, in a process pool): decode, mix to mono,
   resample to 32 kHz (soxr HQ), then
   - a source with a transcript is not split: its edge silence is trimmed; longer than
     `prepare.slicer.max_clip_seconds` -> skipped;
   - a source without one (`slice_only`) is cut by the official silence slicer, and chunks longer than
     the maximum are split again at their quietest frame;
   - per clip: too short / silent -> skipped; peak above 1 -> divided by the peak (warning); official
     loudness mixes (`audio.loudness`); written as 16-bit WAV; linear spectrogram cached as `.npy`.
   Each finished source leaves a record in `.work/sources/`; a later run reuses it when the source file,
   its transcript and the audio settings are unchanged and its outputs exist.
3. **post-audio stages** (`data.stages`): text (phonemes) and features (HuBERT) plug in here.
4. **split** (`data.split`), **manifest** (`manifest.jsonl`), **report** (`report.json`, `report.png`).

With `slice_only`, stage 2 slices every source, writes the clips and `transcripts_template.list`
(official `.list` format with empty text) and the run stops there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gptsovits_train.audio.io import AudioLoadError, load_audio, resample, to_pcm16, wav_bytes_pcm16
from gptsovits_train.audio.loudness import peak, peak_mix
from gptsovits_train.audio.slicer import (
    SlicerParams,
    frame_rms,
    slice_bounds,
    span_is_silent,
    split_long,
    trim_edges,
)
from gptsovits_train.config import AudioConfig, Config, PrepareConfig
from gptsovits_train.data.manifest import Clip
from gptsovits_train.data.report import PrepareReport, write_dataset_outputs, write_report_json
from gptsovits_train.data.report_types import Skipped, WarningItem
from gptsovits_train.data.sources import Source, SourcePlan, collect_sources
from gptsovits_train.data.split import SplitItem, assign_split, read_val_list, resolve_val_list
from gptsovits_train.data.stages import Stage, StageResult, stage_name
from gptsovits_train.errors import GsvError
from gptsovits_train.fileio import atomic_save_npy, atomic_write_bytes, atomic_write_text
from gptsovits_train.layout import DatasetLayout

LOG = logging.getLogger(__name__)

RECORD_FORMAT = 1
Mode = Literal["trim", "slice"]


# ------------------------------------------------------------------------------------- audio stage
@dataclass(frozen=True)
class SourceJob:
    """Everything one worker needs to turn one source file into clips (picklable)."""

    source: Source
    mode: Mode  # "trim": keep whole (has a transcript); "slice": silence slicer
    final_mix: bool  # apply the training-copy loudness mix (not for --slice-only clips)
    write_spec: bool
    root: Path
    audio: AudioConfig
    prepare: PrepareConfig

    def fingerprint(self) -> str:
        """Changes whenever the source file, its transcript or any setting that shapes its clips does."""
        st = self.source.path.stat()
        payload = {
            "format": RECORD_FORMAT,
            "path": str(self.source.path),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "id": self.source.id,
            "transcript": asdict(self.source.transcript) if self.source.transcript else None,
            "mode": self.mode,
            "final_mix": self.final_mix,
            "write_spec": self.write_spec,
            "audio": self.audio.model_dump(mode="json"),
            "slicer": self.prepare.slicer.model_dump(mode="json"),
            "loudness": self.prepare.loudness.model_dump(mode="json"),
            "min_clip_seconds": self.prepare.min_clip_seconds,
            "max_source_peak": self.prepare.max_source_peak,
            "spec_dtype": self.prepare.spec_dtype,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class SourceOutcome:
    """Clips made from one source plus what was skipped/noted; `audio_seconds` of input decoded."""

    clips: list[Clip] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[WarningItem] = field(default_factory=list)
    audio_seconds: float = 0.0
    file_sizes: dict[str, int] = field(default_factory=dict)  # relative path -> bytes written

    def to_dict(self) -> dict[str, Any]:
        return {
            "clips": [asdict(c) for c in self.clips],
            "skipped": [s.to_dict() for s in self.skipped],
            "warnings": [w.to_dict() for w in self.warnings],
            "audio_seconds": self.audio_seconds,
            "file_sizes": self.file_sizes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceOutcome:
        return cls(
            clips=[Clip.from_dict(c) for c in data["clips"]],
            skipped=[Skipped.from_dict(s) for s in data["skipped"]],
            warnings=[WarningItem.from_dict(w) for w in data["warnings"]],
            audio_seconds=float(data["audio_seconds"]),
            file_sizes={str(k): int(v) for k, v in data["file_sizes"].items()},
        )


def _span(path: Path, start: int, end: int, sr: int) -> str:
    return f"{path} [{start / sr:.2f}-{end / sr:.2f} s]"


def process_source(job: SourceJob) -> SourceOutcome:
    """Decode, cut, normalise and write the clips of one source (the audio stage for one file).

    Per-file problems become `Skipped`/`WarningItem` entries; nothing is raised for bad audio.
    """
    src, pcfg, acfg = job.source, job.prepare, job.audio
    sr = acfg.sampling_rate
    out = SourceOutcome()
    name = str(src.path)
    try:
        loaded = load_audio(src.path)
    except AudioLoadError as exc:
        out.skipped.append(Skipped(name, str(exc)))
        return out
    out.audio_seconds = loaded.seconds
    out.warnings.extend(WarningItem(name, w) for w in loaded.warnings)
    wave = resample(loaded.samples, loaded.sample_rate, sr)
    params = SlicerParams.from_config(pcfg.slicer, sr)
    rms = frame_rms(wave, params.win, params.hop)
    source_peak = peak(wave)
    if source_peak > pcfg.max_source_peak:
        out.skipped.append(
            Skipped(name, f"peak {source_peak:.2f} exceeds prepare.max_source_peak {pcfg.max_source_peak}")
        )
        return out
    if source_peak == 0.0 or rms.max() < params.threshold:
        out.skipped.append(Skipped(name, f"pure silence (nothing above {pcfg.slicer.threshold_db:g} dB)"))
        return out

    max_samples = round(pcfg.slicer.max_clip_seconds * sr)
    bounds: list[tuple[int, int]]
    if job.mode == "trim":
        trimmed = trim_edges(wave, params, rms)
        if trimmed is None:  # not reached after the silence check above; keeps the types narrow
            out.skipped.append(Skipped(name, "pure silence"))
            return out
        length = (trimmed[1] - trimmed[0]) / sr
        if trimmed[1] - trimmed[0] > max_samples:
            out.skipped.append(
                Skipped(
                    name,
                    f"{length:.1f} s after trimming silence, longer than prepare.slicer.max_clip_seconds "
                    f"({pcfg.slicer.max_clip_seconds:g} s); it has a transcript, so it is not split "
                    "(cut it yourself, or use --slice-only and transcribe the clips)",
                )
            )
            return out
        bounds = [trimmed]
    else:
        bounds = []
        for start, end in slice_bounds(wave, params, rms):
            bounds.extend(split_long(wave, start, end, max_samples, params))

    # the spectrogram needs more samples than its reflect pad and at least one frame
    spec_min = max(acfg.hop_length, (acfg.filter_length - acfg.hop_length) // 2 + 1)
    min_samples = max(round(pcfg.min_clip_seconds * sr), spec_min)
    repaired: list[float] = []
    lcfg = pcfg.loudness
    layout = DatasetLayout(job.root)
    for start, end in bounds:
        span = _span(src.path, start, end, sr)
        n = end - start
        if n < min_samples:
            out.skipped.append(
                Skipped(
                    span,
                    f"shorter than prepare.min_clip_seconds ({n / sr:.2f} s < {pcfg.min_clip_seconds:g} s)",
                )
            )
            continue
        clip_wave = wave[start:end]
        if span_is_silent(rms, start, end, params):
            out.skipped.append(Skipped(span, "pure silence"))
            continue
        clip_peak = peak(clip_wave)
        if clip_peak > 1.0:
            clip_wave = clip_wave / np.float32(clip_peak)
            repaired.append(clip_peak)
        if lcfg.enabled:
            if job.mode == "slice":
                clip_wave = peak_mix(clip_wave, lcfg.max_peak, lcfg.alpha)
            if job.final_mix:
                clip_wave = peak_mix(clip_wave, lcfg.wav32k_peak, lcfg.wav32k_alpha)
        clip_id = src.id if job.mode == "trim" else f"{src.id}_{start:010d}_{end:010d}"
        # Clip files are renamed into place (atomic) without fsync; the record stores their sizes so
        # that a resume after a power cut notices a file the disk lost.
        wav_path = layout.wav(clip_id)
        # official int16 scale: 32768 for the training copy (5-wav32k), 32767 for slicer output
        pcm = to_pcm16(clip_wave, 32768.0 if job.final_mix else 32767.0)
        data = wav_bytes_pcm16(pcm, sr)
        atomic_write_bytes(wav_path, data, fsync=False)
        out.file_sizes[layout.relative(wav_path)] = len(data)
        spec_rel: str | None = None
        if job.write_spec:
            spec = compute_spec(pcm, acfg, pcfg.spec_dtype)
            spec_path = layout.spec(clip_id)
            atomic_save_npy(spec_path, spec, fsync=False)
            spec_rel = layout.relative(spec_path)
            out.file_sizes[spec_rel] = spec_path.stat().st_size
        tr = src.transcript
        out.clips.append(
            Clip(
                id=clip_id,
                path=layout.relative(wav_path),
                source=name,
                start=start / sr,
                end=end / sr,
                duration=n / sr,
                # a transcript belongs to the whole source: slices of it get no text
                text=tr.text if tr is not None and job.mode == "trim" else "",
                language=src.language,
                speaker=src.speaker,
                n_samples=n,
                n_frames=n // acfg.hop_length,
                spec=spec_rel,
            )
        )
    if repaired:
        out.warnings.append(
            WarningItem(
                name,
                f"{len(repaired)} clip(s) peaked above 1.0 (max {max(repaired):.3f}); divided by their peak",
            )
        )
    return out


def compute_spec(pcm: np.ndarray, acfg: AudioConfig, dtype: str) -> np.ndarray:
    """Linear spectrogram of an int16 clip as the training loader sees it (pcm / 32768).

    Args:
        pcm: (L,) int16.
    Returns:
        (n_fft // 2 + 1, L // hop) array of `dtype`.
    """
    import torch

    from gptsovits_train.audio.spectrogram import spectrogram

    wave = torch.from_numpy(pcm).to(torch.float32) / 32768.0
    with torch.no_grad():
        spec = spectrogram(wave, acfg)
    return spec.to(getattr(torch, dtype)).numpy()


def _worker_init() -> None:
    # One process per core; keep torch single-threaded inside each.
    import torch

    torch.set_num_threads(1)


def _record_outputs_exist(layout: DatasetLayout, outcome: SourceOutcome) -> bool:
    """Every clip file of a record is present with the size it was written with."""
    for clip in outcome.clips:
        for rel in (clip.path, clip.spec):
            if rel is None:
                continue
            try:
                size = (layout.root / rel).stat().st_size
            except OSError:
                return False
            if size != outcome.file_sizes.get(rel):
                return False
    return True


def _load_record(layout: DatasetLayout, job: SourceJob, fingerprint: str) -> SourceOutcome | None:
    path = layout.source_record(job.source.key)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("fingerprint") != fingerprint:
            return None
        outcome = SourceOutcome.from_dict(data["outcome"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        LOG.warning("ignoring unreadable progress record %s (%s); redoing %s", path, exc, job.source.path)
        return None
    return outcome if _record_outputs_exist(layout, outcome) else None


def default_workers() -> int:
    """Usable CPU cores of this process."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def run_audio_stage(
    layout: DatasetLayout,
    jobs: Sequence[SourceJob],
    *,
    workers: int,
    progress: bool,
) -> tuple[list[SourceOutcome], int]:
    """Run (or reuse) every job; returns outcomes in job order and how many were reused."""
    layout.work_dir.mkdir(parents=True, exist_ok=True)
    outcomes: list[SourceOutcome | None] = [None] * len(jobs)
    fingerprints = [job.fingerprint() for job in jobs]
    todo: list[int] = []
    for i, job in enumerate(jobs):
        rec = _load_record(layout, job, fingerprints[i])
        if rec is None:
            todo.append(i)
        else:
            outcomes[i] = rec
    reused = len(jobs) - len(todo)
    if reused:
        LOG.info("resuming: %d of %d sources already done", reused, len(jobs))

    def task(i: int) -> tuple[SourceJob, str, Path]:
        return jobs[i], fingerprints[i], layout.source_record(jobs[i].source.key)

    from tqdm import tqdm

    n_workers = max(1, min(workers, len(todo)))
    if n_workers == 1:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one worker means one core, in this process too
        try:
            with tqdm(
                total=len(todo), disable=not progress, file=sys.stderr, unit="file", desc="audio"
            ) as bar:
                for i in todo:
                    outcomes[i] = _run_job(*task(i))
                    bar.update(1)
        finally:
            torch.set_num_threads(threads)
    elif todo:
        # Import torch once here so that forked workers inherit it instead of importing it each.
        import torch

        method = "fork" if sys.platform.startswith("linux") else "spawn"
        ctx = multiprocessing.get_context(method)
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_worker_init) as pool:
            # Submit everything before the progress bar starts its monitor thread (fork safety).
            futures: dict[Future[SourceOutcome], int] = {pool.submit(_run_job, *task(i)): i for i in todo}
            try:
                with tqdm(
                    total=len(todo), disable=not progress, file=sys.stderr, unit="file", desc="audio"
                ) as bar:
                    for fut in as_completed(futures):
                        outcomes[futures[fut]] = fut.result()
                        bar.update(1)
            except BaseException:
                # Ctrl-C or a bug: do not start the remaining sources (finished ones keep their records).
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return [o for o in outcomes if o is not None], reused


def _run_job(job: SourceJob, fingerprint: str, record_path: Path) -> SourceOutcome:
    """Process one source, then write its progress record (last, so a record means "all files done")."""
    try:
        outcome = process_source(job)
    except Exception as exc:  # a bug, not bad audio: keep the traceback, name the file
        raise RuntimeError(f"unexpected error while preparing {job.source.path}: {exc}") from exc
    record = {"fingerprint": fingerprint, "source": str(job.source.path), "outcome": outcome.to_dict()}
    # no fsync: a record lost in a power cut only means that the source is done again
    atomic_write_bytes(record_path, json.dumps(record).encode(), fsync=False)
    return outcome


# ---------------------------------------------------------------------------------------- pipeline
def _check_out_dir(layout: DatasetLayout, inputs: Sequence[Path]) -> None:
    """Refuse an output folder that holds inputs, lies inside an input folder, or is someone else's."""
    root = layout.root.absolute()
    if root.exists() and not root.is_dir():
        raise GsvError(f"--out {layout.root} exists and is not a folder")
    for inp in inputs:
        p = Path(inp).absolute()
        if p == root or root in p.parents:
            raise GsvError(f"input {inp} is inside the output folder {layout.root}; choose another --out")
        if p.is_dir() and p in root.parents:
            raise GsvError(
                f"output folder {layout.root} is inside the input folder {inp}; choose another --out"
            )
    if root.is_dir() and any(root.iterdir()):
        ours = layout.work_dir.is_dir() or layout.manifest.is_file() or layout.list_template.is_file()
        if not ours:
            raise GsvError(
                f"{layout.root} is not empty and is not a gsv-train dataset; choose an empty folder"
            )


def _clear_outputs(layout: DatasetLayout) -> None:
    """--force: delete what an earlier run wrote (only the dataset's own paths)."""
    if layout.root.is_dir():
        for d in (layout.wavs_dir, layout.spec_dir, layout.ssl_dir, layout.work_dir):
            if d.is_dir():
                shutil.rmtree(d)
        for f in (
            layout.manifest,
            layout.report_json,
            layout.report_png,
            layout.list_template,
            layout.config,
        ):
            f.unlink(missing_ok=True)


def _remove_orphans(layout: DatasetLayout, clips: Sequence[Clip], jobs: Sequence[SourceJob]) -> int:
    """Delete clip files and records that belong to no current clip/source (from earlier runs)."""
    keep = {layout.root / c.path for c in clips} | {layout.root / c.spec for c in clips if c.spec}
    removed = 0
    for folder, pattern in ((layout.wavs_dir, "*.wav"), (layout.spec_dir, "*.npy")):
        if folder.is_dir():
            for f in folder.glob(pattern):
                if f not in keep:
                    f.unlink()
                    removed += 1
            for f in folder.glob(".*.tmp-*"):
                f.unlink()
    records = {layout.source_record(j.source.key) for j in jobs}
    rec_dir = layout.work_dir / "sources"
    if rec_dir.is_dir():
        for f in rec_dir.glob("*.json"):
            if f not in records:
                f.unlink()
    return removed


def _write_template(layout: DatasetLayout, clips: Sequence[Clip], language: str) -> None:
    """Official `.list` with empty text: ``wavs/<id>.wav|speaker|LANG|`` (paths relative to the list)."""
    lines = [f"{c.path}|{c.speaker}|{(c.language or language).upper()}|" for c in clips]
    atomic_write_text(layout.list_template, "".join(line + "\n" for line in lines))


def no_transcript_message(n_sources: int) -> str:
    return (
        f"none of the {n_sources} audio files has a transcript. Give one with --transcripts FILE "
        "(.list or LJSpeech metadata.csv) or <name>.txt/<name>.lab beside each file, "
        "or run with --slice-only to cut clips and get a .list template to fill in, "
        "or transcribe them with --asr DIR"
    )


def default_post_audio_stages(cfg: Config) -> list[Stage]:
    """The stages `prepare` runs after the audio stage when the caller passes none, in order.

    1. text: phonemes via `gptsovits_train.text.g2p` (`data.phonemize.phonemize_clips`);
    2. features: HuBERT content features in `ssl/<id>.npy` (`features.extract_features`), only when
       `cfg.prepare.features.hubert` names a model folder (or `random-tiny`); without one the dataset has
       no features and `fit` refuses it with a message saying what to run.
    An ASR stage, when asked for, runs before these (see `commands/prepare.py`).
    """
    from gptsovits_train.data.phonemize import phonemize_clips

    stages: list[Stage] = [phonemize_clips]
    if cfg.prepare.features.hubert:
        from gptsovits_train.features import extract_features

        stages.append(extract_features)
    return stages


def prepare(
    inputs: Sequence[Path | str],
    out_dir: Path | str,
    cfg: Config,
    *,
    transcripts: Sequence[Path | str] = (),
    language: str | None = None,
    speaker: str | None = None,
    workers: int | None = None,
    val_list: Path | str | None = None,
    slice_only: bool = False,
    keep_untranscribed: bool = False,
    force: bool = False,
    stages: Sequence[Stage] | None = None,
    progress: bool = True,
) -> PrepareReport:
    """Build (or resume) a dataset folder from audio files and transcripts.

    Args:
        inputs: audio files and folders (recursive); may be empty when `transcripts` name the audio.
        out_dir: dataset folder (created; resumed when it holds an earlier run).
        cfg: configuration; `cfg.prepare` and `cfg.audio` are used. Seed/val ratio: `cfg.prepare.split`.
        transcripts: `.list` / LJSpeech metadata files.
        language: language of transcripts that carry none (default `cfg.prepare.text.language`).
        speaker: speaker name where a transcript has none (default: the source's folder name).
        workers: processes for the audio stage (default `cfg.prepare.workers`, else all cores).
        val_list: file of clip ids / paths that form the validation set.
        slice_only: slice every source, write clips + `transcripts_template.list`, and stop.
        keep_untranscribed: slice sources without a transcript and keep their clips (text "") for a
            post-audio stage to transcribe (ASR); clips still without text afterwards are skipped.
        force: delete the outputs of an earlier run first.
        stages: post-audio stages (default `default_post_audio_stages(cfg)`).
        progress: show a progress bar on stderr.
    Returns:
        The report (also written to report.json).
    Raises:
        GsvError: no audio, no transcript at all, bad output folder, or no usable clip in the end.
    """
    t0 = time.perf_counter()
    layout = DatasetLayout(Path(out_dir))
    pcfg = cfg.prepare
    lang = language or pcfg.text.language
    if slice_only and lang == "auto":
        raise GsvError(
            "--slice-only needs --language (zh, en, ja, ko or yue) for the LANG column of the template"
        )
    _check_out_dir(layout, [Path(p) for p in inputs])

    # 1. sources + transcripts ------------------------------------------------------------------
    plan: SourcePlan = collect_sources(inputs, transcripts, language=lang, speaker=speaker)
    skipped = list(plan.skipped)
    warnings = list(plan.warnings)
    root = layout.root.absolute()
    inside = [s.path for s in plan.sources if root in s.path.parents]
    if inside:
        raise GsvError(f"source {inside[0]} is inside the output folder {layout.root}; choose another --out")
    if force:
        _clear_outputs(layout)
    if not plan.sources:
        detail = f"; first problem: {skipped[0].source}: {skipped[0].reason}" if skipped else ""
        raise GsvError(f"no audio files to prepare (looked for .wav, .flac, .mp3, .ogg, .opus){detail}")
    jobs: list[SourceJob] = []
    for src in plan.sources:
        has_text = src.transcript is not None and bool(src.transcript.text)
        if slice_only or (not has_text and keep_untranscribed):
            mode: Mode = "slice"
        elif has_text:
            mode = "trim"
        else:
            reason = "no transcript"
            if src.transcript is not None:
                reason = f"empty transcript ({src.transcript.origin})"
            skipped.append(Skipped(str(src.path), reason, "transcripts"))
            continue
        jobs.append(
            SourceJob(src, mode, not slice_only, not slice_only, layout.root.absolute(), cfg.audio, pcfg)
        )
    if not slice_only and not keep_untranscribed and plan.n_with_transcript == 0:
        raise GsvError(no_transcript_message(len(plan.sources)))
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.work_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.config, cfg.to_yaml())

    # 2. audio stage ------------------------------------------------------------------------------
    n_workers = workers or pcfg.workers or default_workers()
    outcomes, reused = run_audio_stage(layout, jobs, workers=n_workers, progress=progress)
    clips: list[Clip] = []
    seen: dict[str, str] = {}
    audio_seconds = 0.0
    for outcome in outcomes:
        skipped.extend(outcome.skipped)
        warnings.extend(outcome.warnings)
        audio_seconds += outcome.audio_seconds
        for clip in outcome.clips:
            if clip.id in seen:
                skipped.append(
                    Skipped(clip.source, f"duplicate clip id {clip.id!r} (also from {seen[clip.id]})")
                )
                continue
            seen[clip.id] = clip.source
            clips.append(clip)
    clips.sort(key=lambda c: c.id)
    _remove_orphans(layout, clips, jobs)
    stage_names = ["audio"]

    report = PrepareReport(
        out_dir=str(layout.root),
        slice_only=slice_only,
        clips=clips,
        skipped=skipped,
        warnings=warnings,
        n_sources=len(plan.sources),
        n_sources_reused=reused,
        audio_seconds_processed=audio_seconds,
        stages=stage_names,
    )
    if slice_only:
        _write_template(layout, clips, lang)
        report.wall_seconds = time.perf_counter() - t0
        write_report_json(layout.report_json, report)
        if not clips:
            raise GsvError(
                f"no usable clip: all {len(plan.sources)} sources were skipped (see {layout.report_json})"
            )
        return report

    # 3. post-audio stages (text, features; see data/stages.py) ---------------------------------------
    for stage in default_post_audio_stages(cfg) if stages is None else stages:
        name = stage_name(stage)
        LOG.info("stage %s: %d clips", name, len(clips))
        result: StageResult = stage(layout, clips, cfg)
        clips = sorted(result.clips, key=lambda c: c.id)
        skipped.extend(
            Skipped(s.source, s.reason, s.stage if s.stage != "audio" else name) for s in result.skipped
        )
        warnings.extend(result.warnings)
        stage_names.append(name)
    if keep_untranscribed:
        kept = []
        for clip in clips:
            if clip.text:
                kept.append(clip)
            else:
                span = f"{clip.source} [{clip.start:.2f}-{clip.end:.2f} s]"
                skipped.append(Skipped(span, "no transcript", "transcripts"))
        clips = kept

    # 4. split, manifest, report ----------------------------------------------------------------------
    pinned = None
    if val_list is not None:
        keys = {
            c.id: [c.path, Path(c.path).name, c.source, Path(c.source).name, Path(c.source).stem]
            for c in clips
        }
        pinned, unmatched = resolve_val_list(read_val_list(val_list), keys)
        for entry in unmatched:
            warnings.append(WarningItem(str(val_list), f"--val-list entry matches no clip: {entry}", "split"))
    split = assign_split(
        [SplitItem(c.id, c.n_samples) for c in clips], pcfg.split.val_ratio, pcfg.split.seed, pinned
    )
    for clip in clips:
        clip.split = "val" if split[clip.id] == "val" else "train"
    report.clips = clips
    report.skipped = skipped
    report.warnings = warnings
    report.wall_seconds = time.perf_counter() - t0
    write_dataset_outputs(
        layout,
        report,
        clips,
        empty_message=f"no usable clip: all {len(plan.sources)} sources were skipped "
        f"(reasons in {layout.report_json})",
    )
    if len(report.split_clips("train")) == 0:
        warnings.append(
            WarningItem(str(val_list), "every clip is in the validation set; nothing to train on", "split")
        )
        write_report_json(layout.report_json, report)
    return report
