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
   A source longer than `STREAM_MIN_SECONDS` is decoded block by block into a spill file instead
   (`analyse_streamed`: same clips, flat memory) and its clips are written by every worker
   (`write_clip_group`); see `run_audio_stage`. SIGINT/SIGTERM stop the run at once, keeping finished
   sources (`data.workers`).
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
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gptsovits_train.audio.clipping import Clipping, detect_clipping
from gptsovits_train.audio.io import (
    AUDIO_EXTENSIONS_TEXT,
    AudioLoadError,
    load_audio,
    resample,
    to_pcm16,
    wav_bytes_pcm16,
)
from gptsovits_train.audio.loudness import peak, peak_mix
from gptsovits_train.audio.slicer import (
    SampleReader,
    SlicerParams,
    bounds_from_rms,
    frame_rms,
    frame_rms_range,
    span_is_silent,
    split_long,
    trim_from_rms,
)
from gptsovits_train.audio.stream import BLOCK_FRAMES, SpillFile, decode_to_spill, stream_info
from gptsovits_train.config import AudioConfig, Config, PrepareConfig
from gptsovits_train.data.manifest import Clip
from gptsovits_train.data.report import PrepareReport, write_dataset_outputs, write_report_json
from gptsovits_train.data.report_types import Skipped, WarningItem
from gptsovits_train.data.sources import Source, SourcePlan, collect_sources
from gptsovits_train.data.split import (
    SplitItem,
    assign_split,
    read_val_list,
    resolve_val_list,
    split_warning,
)
from gptsovits_train.data.stages import Stage, StageResult, stage_name
from gptsovits_train.data.workers import StopRequested, interruptible, kill_pool, worker_init
from gptsovits_train.errors import GsvError
from gptsovits_train.fileio import (
    OutputWriteError,
    atomic_save_npy,
    atomic_write_bytes,
    atomic_write_text,
    output_failure,
)
from gptsovits_train.layout import DatasetLayout

LOG = logging.getLogger(__name__)

RECORD_FORMAT = 1
#: Sources longer than this (input seconds, from the file header) are decoded block by block into a
#: spill file instead of into memory (same clips, flat memory; see `analyse_streamed`).
STREAM_MIN_SECONDS = 60.0
#: Clip-writing tasks of a long source cover about this much audio each.
CLIP_GROUP_SECONDS = 60.0
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
    # not in the fingerprint: both ways of decoding give the same clips
    stream_min_seconds: float = STREAM_MIN_SECONDS

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

    The whole file is held in memory; `analyse_streamed` + `write_clip_group` do the same for a long
    file with flat memory and the same result. Per-file problems become `Skipped`/`WarningItem`
    entries; nothing is raised for bad audio.
    """
    src, sr = job.source, job.audio.sampling_rate
    out = SourceOutcome()
    try:
        loaded = load_audio(src.path)
    except AudioLoadError as exc:
        out.skipped.append(Skipped(str(src.path), str(exc)))
        return out
    out.audio_seconds = loaded.seconds
    out.warnings.extend(WarningItem(str(src.path), w) for w in loaded.warnings)
    clipping = detect_clipping(loaded.samples)
    if clipping.share > job.prepare.clipping_skip_share:
        reason = f"{clipping_text(clipping)}, more than prepare.clipping_skip_share"
        out.skipped.append(Skipped(str(src.path), reason))
        return out
    if clipping.share > job.prepare.clipping_warn_share:
        warning = f"{clipping_text(clipping)}; expect audible distortion"
        out.warnings.append(WarningItem(str(src.path), warning))
    wave = resample(loaded.samples, loaded.sample_rate, sr)
    params = SlicerParams.from_config(job.prepare.slicer, sr)
    rms = frame_rms(wave, params.win, params.hop)
    bounds = _cut_source(job, wave, wave.shape[0], rms, peak(wave), params, out)
    repaired = write_clips(job, wave, rms, 0, bounds, out)
    _note_repaired(job, repaired, out, peak(loaded.samples))
    return out


def _cut_source(
    job: SourceJob,
    samples: np.ndarray | SampleReader,
    n_samples: int,
    rms: np.ndarray,
    source_peak: float,
    params: SlicerParams,
    out: SourceOutcome,
) -> list[tuple[int, int]]:
    """Clip ranges of a decoded source from its frame RMS and peak; [] (with a reason in `out`) when
    the whole source is skipped. `samples` is only read to split chunks longer than the maximum."""
    pcfg, sr, name = job.prepare, job.audio.sampling_rate, str(job.source.path)
    if source_peak > pcfg.max_source_peak:
        out.skipped.append(
            Skipped(name, f"peak {source_peak:.2f} exceeds prepare.max_source_peak {pcfg.max_source_peak}")
        )
        return []
    if source_peak == 0.0 or rms.max() < params.threshold:
        out.skipped.append(Skipped(name, f"pure silence (nothing above {pcfg.slicer.threshold_db:g} dB)"))
        return []
    max_samples = round(pcfg.slicer.max_clip_seconds * sr)
    if job.mode == "trim":
        trimmed = trim_from_rms(rms, n_samples, params)
        if trimmed is None:  # not reached after the silence check above; keeps the types narrow
            out.skipped.append(Skipped(name, "pure silence"))
            return []
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
            return []
        return [trimmed]
    bounds: list[tuple[int, int]] = []
    for start, end in bounds_from_rms(rms, n_samples, params):
        bounds.extend(split_long(samples, start, end, max_samples, params))
    return bounds


def write_clips(
    job: SourceJob,
    samples: np.ndarray | SampleReader,
    rms: np.ndarray,
    rms_offset: int,
    bounds: Sequence[tuple[int, int]],
    out: SourceOutcome,
) -> list[float]:
    """Check, normalise and write the clips `bounds` of one source; returns the peaks it repaired.

    Args:
        samples: the source's 32 kHz waveform, or a `SampleReader` of it.
        rms: frames `rms_offset ...` of the source's frame RMS, covering every range in `bounds`.
    """
    src, pcfg, acfg = job.source, job.prepare, job.audio
    sr = acfg.sampling_rate
    read = samples if not isinstance(samples, np.ndarray) else (lambda a, b: samples[a:b])
    params = SlicerParams.from_config(pcfg.slicer, sr)
    name = str(src.path)
    shift = rms_offset * params.hop
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
        if span_is_silent(rms, start - shift, end - shift, params):
            out.skipped.append(Skipped(span, "pure silence"))
            continue
        clip_wave = read(start, end)
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
    return repaired


def _note_repaired(job: SourceJob, repaired: Sequence[float], out: SourceOutcome, source_peak: float) -> None:
    # Resampling rings a little above a full-scale input; only a source that was itself above 1.0 is news.
    if repaired and source_peak > 1.0 and max(repaired) >= 1.0005:
        out.warnings.append(
            WarningItem(
                str(job.source.path),
                f"{len(repaired)} clip(s) peaked above 1.0 (max {max(repaired):.3f}); divided by their peak",
            )
        )


# ------------------------------------------------------------------------- long sources, flat memory
@dataclass
class SourceCuts:
    """The analysis of a streamed source: where its clips are, before any clip is written.

    Attributes:
        outcome: what is known so far (input seconds, load warnings, or why the source is skipped).
        bounds: clip ranges in 32 kHz samples ([] when the whole source is skipped).
        n_samples: length of the 32 kHz signal in the spill file.
        rms: (n_frames,) float64 frame RMS of the whole signal (empty when skipped).
        cpu: CPU seconds per part: `decode` (+ checks, mix), `resample` (+ peak, spill write),
            `cuts` (frame RMS from the spill, slicer); for benchmarks.
    """

    outcome: SourceOutcome
    bounds: list[tuple[int, int]]
    n_samples: int
    rms: np.ndarray
    cpu: dict[str, float] = field(default_factory=dict)
    source_peak: float = 0.0  # of the 32 kHz signal


def analyse_streamed(
    job: SourceJob,
    spill: Path,
    helper_thread: bool = False,
    *,
    decode_block: int = BLOCK_FRAMES,
    rms_block: int = 1 << 11,
) -> SourceCuts:
    """Decode a long source block by block into `spill` (32 kHz float32), then find its clips.

    Memory stays flat in the recording's length: one decode block, plus the frame RMS (8 bytes per
    10 ms). The clip ranges are those `process_source` finds for the same file, for any block sizes
    (`decode_block`: input frames per decode block; `rms_block`: frames per RMS block).
    """
    sr = job.audio.sampling_rate
    out = SourceOutcome()
    try:
        decoded = decode_to_spill(
            job.source.path, sr, spill, block_frames=decode_block, helper_thread=helper_thread
        )
    except AudioLoadError as exc:
        spill.unlink(missing_ok=True)
        out.skipped.append(Skipped(str(job.source.path), str(exc)))
        return SourceCuts(out, [], 0, np.zeros(0))
    out.audio_seconds = decoded.input_seconds
    out.warnings.extend(WarningItem(str(job.source.path), w) for w in decoded.warnings)
    start = time.thread_time()
    params = SlicerParams.from_config(job.prepare.slicer, sr)
    read = SpillFile(spill, decoded.n_samples)
    rms = frame_rms_range(read, decoded.n_samples, params.win, params.hop, block_frames=rms_block)
    bounds = _cut_source(job, read, decoded.n_samples, rms, decoded.peak, params, out)
    cpu = {"decode": decoded.decode_cpu, "resample": decoded.resample_cpu, "cuts": time.thread_time() - start}
    return SourceCuts(out, bounds, decoded.n_samples, rms if bounds else np.zeros(0), cpu, decoded.peak)


def write_clip_group(
    job: SourceJob,
    spill: Path,
    n_samples: int,
    bounds: Sequence[tuple[int, int]],
    rms: np.ndarray,
    rms_offset: int,
) -> tuple[SourceOutcome, list[float]]:
    """Write the clips `bounds` of a streamed source from its spill file (one task of the pool)."""
    out = SourceOutcome()
    repaired = write_clips(job, SpillFile(spill, n_samples), rms, rms_offset, bounds, out)
    return out, repaired


def clip_groups(bounds: Sequence[tuple[int, int]], group_samples: int) -> list[list[tuple[int, int]]]:
    """Consecutive clip ranges in groups of at least `group_samples` (the last may be shorter)."""
    groups: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    size = 0
    for start, end in bounds:
        current.append((start, end))
        size += end - start
        if size >= group_samples:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def clipping_text(clipping: Clipping) -> str:
    return (
        f"clipped: {clipping.share:.1%} of the samples sit in flat runs at full scale "
        f"(|x| = {clipping.level:.3f})"
    )


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


def _needs_stream(job: SourceJob) -> bool:
    """Long files that libsndfile can stream are cut with flat memory (`analyse_streamed`)."""
    info = stream_info(job.source.path)
    return info is not None and info.seconds > job.stream_min_seconds


class _InlineExecutor:
    """Runs each submitted call at once in this process (`-j 1`); same interface as the pool."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001  (delivered through the future, as a pool would)
            fut.set_exception(exc)
        return fut


def run_audio_stage(
    layout: DatasetLayout,
    jobs: Sequence[SourceJob],
    *,
    workers: int,
    progress: bool,
) -> tuple[list[SourceOutcome], int]:
    """Run (or reuse) every job; returns outcomes in job order and how many were reused.

    A short source is one task (`process_source`). A long one (`_needs_stream`) is an analysis task
    (`analyse_streamed`: decode, resample and frame RMS block by block into a spill file, then the
    cuts) followed by one clip-writing task per ~`CLIP_GROUP_SECONDS` of clips (`write_clip_group`),
    so that every worker helps on one long recording; with more workers than sources, the analysis
    also decodes in a helper thread. A source's progress record is written when all its clips are.

    Raises:
        StopRequested: SIGINT/SIGTERM (see `data.workers`); the pool is killed, finished sources kept.
    """
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
    if not todo:
        return [o for o in outcomes if o is not None], reused

    from tqdm import tqdm

    streamed = {i for i in todo if _needs_stream(jobs[i])}
    n_workers = max(1, min(workers, len(todo))) if not streamed else max(1, workers)
    with_torch = any(jobs[i].write_spec for i in todo)
    helper_thread = n_workers > len(todo)
    group_samples = round(CLIP_GROUP_SECONDS * jobs[todo[0]].audio.sampling_rate)
    pool: ProcessPoolExecutor | None = None
    executor: ProcessPoolExecutor | _InlineExecutor
    threads: int | None = None
    if n_workers == 1:
        executor = _InlineExecutor()
        if with_torch:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # one worker means one core, in this process too
    else:
        if with_torch:
            import torch  # imported once here: forked workers inherit it

        method = "fork" if sys.platform.startswith("linux") else "spawn"
        pool = ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=multiprocessing.get_context(method),
            initializer=worker_init,
            initargs=(os.getpid(), with_torch),
        )
        pool.submit(int).result()  # fork the workers now, before the progress bar starts a thread
        executor = pool
    tasks: dict[Future[Any], tuple[str, int, int]] = {}
    cuts: dict[int, SourceCuts] = {}
    parts: dict[int, list[tuple[SourceOutcome, list[float]] | None]] = {}
    # at most one long source per worker at a time: each holds a spill file (128 KB per second)
    waiting = [i for i in todo if i in streamed]
    long_in_flight = 0

    def start_long_sources() -> None:
        nonlocal long_in_flight
        while waiting and long_in_flight < n_workers:
            i = waiting.pop(0)
            long_in_flight += 1
            spill = layout.source_spill(jobs[i].source.key)
            tasks[executor.submit(analyse_streamed, jobs[i], spill, helper_thread)] = ("analyse", i, 0)

    def finish(i: int, outcome: SourceOutcome) -> None:
        nonlocal long_in_flight
        if i in streamed:
            long_in_flight -= 1
        source = str(jobs[i].source.path)
        record = {"fingerprint": fingerprints[i], "source": source, "outcome": outcome.to_dict()}
        # last, so that a record means "all files done"; no fsync: a record lost in a power cut
        # only means that the source is done again
        atomic_write_bytes(layout.source_record(jobs[i].source.key), json.dumps(record).encode(), fsync=False)
        layout.source_spill(jobs[i].source.key).unlink(missing_ok=True)
        outcomes[i] = outcome
        bar.update(1)
        start_long_sources()

    def collect(fut: Future[Any], kind: str, i: int, g: int) -> None:
        job = jobs[i]
        try:
            result = fut.result()
        except GsvError:  # a full disk or unwritable folder (OutputWriteError): one line, not a bug
            raise
        except Exception as exc:  # a bug, not bad audio: keep the traceback, name the file
            message = output_failure(exc, job.root) if isinstance(exc, OSError) else None
            if message is not None:
                raise OutputWriteError(message) from exc
            raise RuntimeError(f"unexpected error while preparing {job.source.path}: {exc}") from exc
        if kind == "whole":
            finish(i, result)
        elif kind == "analyse":
            found: SourceCuts = result
            if not found.bounds:
                finish(i, found.outcome)
                return
            cuts[i] = found
            groups = clip_groups(found.bounds, group_samples)
            parts[i] = [None] * len(groups)
            hop = SlicerParams.from_config(job.prepare.slicer, job.audio.sampling_rate).hop
            spill = layout.source_spill(job.source.key)
            for k, group in enumerate(groups):
                f0, f1 = group[0][0] // hop, -(-group[-1][1] // hop)
                fut2 = executor.submit(
                    write_clip_group, job, spill, found.n_samples, group, found.rms[f0:f1], f0
                )
                tasks[fut2] = ("clips", i, k)
        else:
            slots = parts[i]
            slots[g] = result
            if all(slot is not None for slot in slots):
                done_cuts = cuts.pop(i)
                outcome = done_cuts.outcome
                repaired: list[float] = []
                for slot in slots:
                    assert slot is not None
                    group_out, group_repaired = slot
                    outcome.clips.extend(group_out.clips)
                    outcome.skipped.extend(group_out.skipped)
                    outcome.file_sizes.update(group_out.file_sizes)
                    repaired.extend(group_repaired)
                _note_repaired(job, repaired, outcome, done_cuts.source_peak)
                del parts[i]
                finish(i, outcome)

    try:
        with tqdm(total=len(todo), disable=not progress, file=sys.stderr, unit="file", desc="audio") as bar:
            start_long_sources()
            for i in todo:
                if i not in streamed:
                    tasks[executor.submit(process_source, jobs[i])] = ("whole", i, 0)
                    # collect what is done now (all of it with -j 1: each source is recorded at once)
                    while finished := [fut for fut in tasks if fut.done()]:
                        for fut in finished:
                            collect(fut, *tasks.pop(fut))
            while tasks:
                done, _ = wait(list(tasks), return_when=FIRST_COMPLETED)
                for fut in done:
                    collect(fut, *tasks.pop(fut))
    except BaseException as exc:
        # Ctrl-C, SIGTERM or a bug: stop at once; finished sources keep their records
        if pool is not None:
            kill_pool(pool)
            pool = None
        for i in todo:
            if outcomes[i] is None:
                layout.source_spill(jobs[i].source.key).unlink(missing_ok=True)
        if isinstance(exc, StopRequested | KeyboardInterrupt):
            stop = exc if isinstance(exc, StopRequested) else StopRequested(int(signal.SIGINT))
            done_now = sum(1 for i in todo if outcomes[i] is not None)
            stop.detail = f"{reused + done_now} of {len(jobs)} source files done"
            raise stop from None
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
    return [o for o in outcomes if o is not None], reused


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
        for d in (
            layout.wavs_dir,
            layout.spec_dir,
            layout.ssl_dir,
            layout.semantic_dir,
            layout.bert_dir,
            layout.work_dir,
        ):
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


def no_transcript_message(n_sources: int, problems: Sequence[Skipped] = ()) -> str:
    """The error for a run where no source has a transcript, naming what went wrong with the
    transcript files that were given (their `Skipped` items of the transcripts stage)."""
    reasons = [p for p in problems if p.stage == "transcripts"]
    detail = ""
    if reasons:
        shown = "; ".join(f"{p.source}: {p.reason}" for p in reasons[:3])
        more = f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else ""
        detail = f" Transcript problems: {shown}{more}."
    return (
        f"none of the {n_sources} audio files has a transcript.{detail} Give one with --transcripts FILE "
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
    3. sv (v2Pro/v2ProPlus): speaker-verification features in `sv/<id>.npy`
       (`features.sv_extract.extract_sv_features`), only when `cfg.prepare.features.sv` names a model.
    4. only when `cfg.prepare.stages` names "gpt": semantic codes in `semantic/<id>.npy`
       (`features.semantic.extract_semantic`, from the HuBERT features) and BERT features of zh clips in
       `bert/<id>.npy` (`features.bert.extract_bert`).
    An ASR stage, when asked for, runs before these (see `data/prepare_request.py`).
    """
    from gptsovits_train.data.phonemize import phonemize_clips

    stages: list[Stage] = [phonemize_clips]
    if cfg.prepare.features.hubert:
        from gptsovits_train.features import extract_features

        stages.append(extract_features)
    if cfg.prepare.features.sv:
        from gptsovits_train.features.sv_extract import extract_sv_features

        stages.append(extract_sv_features)
    elif cfg.model.version in ("v2Pro", "v2ProPlus"):
        LOG.warning(
            "model.version is %s but prepare.features.sv names no speaker-verification model: the dataset "
            "gets no sv features and a %s fit will refuse it (pass --sv FILE or 'random-tiny')",
            cfg.model.version,
            cfg.model.version,
        )
    if "gpt" in cfg.prepare.stages:
        from gptsovits_train.features.bert import extract_bert
        from gptsovits_train.features.semantic import extract_semantic

        stages += [extract_semantic, extract_bert]
    return stages


@interruptible("prepare")
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
        Interrupted: SIGINT/SIGTERM (Ctrl-C, `timeout`, `docker stop`); finished work is kept and the
            same call resumes (`data.workers`).
    """
    t0 = time.perf_counter()
    layout = DatasetLayout(Path(out_dir))
    pcfg = cfg.prepare
    lang = language or pcfg.text.language
    if slice_only and lang == "auto":
        raise GsvError("--slice-only needs --language (zh or en) for the LANG column of the template")
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
        raise GsvError(f"no audio files to prepare (looked for {AUDIO_EXTENSIONS_TEXT}){detail}")
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
        raise GsvError(no_transcript_message(len(plan.sources), plan.skipped))
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
    n_val = sum(c.split == "val" for c in clips)
    split_problem = (
        split_warning(len(clips) - n_val, n_val, pcfg.split.val_ratio, pinned=pinned is not None)
        if clips
        else None
    )
    if split_problem is not None:
        warnings.append(WarningItem("split", split_problem, "split"))
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
