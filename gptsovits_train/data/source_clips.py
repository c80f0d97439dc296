"""One source file -> clips: the per-source part of `prepare`'s audio stage (see `data.prepare`).

`process_source` handles a source held whole in memory; the same checks and clip writing serve the
streamed path for long recordings (`data.streamed_source`). Everything here runs in pool workers, so
jobs and outcomes are plain picklable dataclasses.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gptsovits_train.audio.clipping import Clipping, detect_clipping
from gptsovits_train.audio.io import AudioLoadError, load_audio, resample, to_pcm16, wav_bytes_pcm16
from gptsovits_train.audio.loudness import peak, peak_mix
from gptsovits_train.audio.slicer import (
    SampleReader,
    SlicerParams,
    bounds_from_rms,
    frame_rms,
    span_is_silent,
    split_long,
    trim_from_rms,
)
from gptsovits_train.config import AudioConfig, PrepareConfig
from gptsovits_train.data.manifest import Clip
from gptsovits_train.data.report_types import Skipped, WarningItem
from gptsovits_train.data.sources import Source
from gptsovits_train.fileio import atomic_save_npy, atomic_write_bytes
from gptsovits_train.layout import DatasetLayout

LOG = logging.getLogger(__name__)

RECORD_FORMAT = 1
#: Sources longer than this (input seconds, from the file header) are decoded block by block into a
#: spill file instead of into memory (same clips, flat memory; see `analyse_streamed`).
STREAM_MIN_SECONDS = 60.0
#: Clip-writing tasks of a long source cover about this much audio each.
CLIP_GROUP_SECONDS = 60.0
Mode = Literal["trim", "slice"]


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
            "clips": [c.to_dict() for c in self.clips],
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
    if not check_clipping(job, detect_clipping(loaded.samples), out):
        return out
    wave = resample(loaded.samples, loaded.sample_rate, sr)
    params = SlicerParams.from_config(job.prepare.slicer, sr)
    rms = frame_rms(wave, params.win, params.hop)
    bounds = _cut_source(job, wave, rms, params, out)
    repaired = write_clips(job, wave, rms, 0, bounds, out)
    note_repaired(job, repaired, out, peak(loaded.samples))
    return out


def check_clipping(job: SourceJob, clipping: Clipping, out: SourceOutcome) -> bool:
    """False (the source skipped, the reason in `out`) when too much of it is clipped; a warning in
    `out` when some is. `clipping`: of the decoded mono signal at its own rate."""
    name = str(job.source.path)
    if clipping.share > job.prepare.clipping_skip_share:
        out.skipped.append(Skipped(name, f"{clipping_text(clipping)}, more than prepare.clipping_skip_share"))
        return False
    if clipping.share > job.prepare.clipping_warn_share:
        out.warnings.append(WarningItem(name, f"{clipping_text(clipping)}; expect audible distortion"))
    return True


def source_skip_reason(
    job: SourceJob, rms: np.ndarray, source_peak: float, params: SlicerParams
) -> str | None:
    """Why a whole decoded source is skipped (its peak, or nothing above the threshold), else None.

    Args:
        rms: (n_frames,) frame RMS of the source's 32 kHz signal; `source_peak`: its peak |x|.
    """
    pcfg = job.prepare
    if source_peak > pcfg.max_source_peak:
        return f"peak {source_peak:.2f} exceeds prepare.max_source_peak {pcfg.max_source_peak}"
    if source_peak == 0.0 or rms.max() < params.threshold:
        return f"pure silence (nothing above {pcfg.slicer.threshold_db:g} dB)"
    return None


def trim_bounds(
    job: SourceJob, rms: np.ndarray, n_samples: int, params: SlicerParams, out: SourceOutcome
) -> list[tuple[int, int]]:
    """The one clip of a source with a transcript (edge silence trimmed), or [] with the reason in `out`."""
    name, sr, max_seconds = str(job.source.path), job.audio.sampling_rate, job.prepare.slicer.max_clip_seconds
    trimmed = trim_from_rms(rms, n_samples, params)
    if trimmed is None:  # not reached after the silence check; keeps the types narrow
        out.skipped.append(Skipped(name, "pure silence"))
        return []
    length = (trimmed[1] - trimmed[0]) / sr
    if trimmed[1] - trimmed[0] > round(max_seconds * sr):
        out.skipped.append(
            Skipped(
                name,
                f"{length:.1f} s after trimming silence, longer than prepare.slicer.max_clip_seconds "
                f"({max_seconds:g} s); it has a transcript, so it is not split "
                "(cut it yourself, or use --slice-only and transcribe the clips)",
            )
        )
        return []
    return [trimmed]


def _cut_source(
    job: SourceJob,
    samples: np.ndarray,
    rms: np.ndarray,
    params: SlicerParams,
    out: SourceOutcome,
) -> list[tuple[int, int]]:
    """Clip ranges of a source held in memory; [] (with a reason in `out`) when it is skipped whole."""
    n_samples = samples.shape[0]
    reason = source_skip_reason(job, rms, peak(samples), params)
    if reason is not None:
        out.skipped.append(Skipped(str(job.source.path), reason))
        return []
    if job.mode == "trim":
        return trim_bounds(job, rms, n_samples, params, out)
    max_samples = round(job.prepare.slicer.max_clip_seconds * job.audio.sampling_rate)
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


def note_repaired(job: SourceJob, repaired: Sequence[float], out: SourceOutcome, source_peak: float) -> None:
    # Resampling rings a little above a full-scale input; only a source that was itself above 1.0 is news.
    if repaired and source_peak > 1.0 and max(repaired) >= 1.0005:
        out.warnings.append(
            WarningItem(
                str(job.source.path),
                f"{len(repaired)} clip(s) peaked above 1.0 (max {max(repaired):.3f}); divided by their peak",
            )
        )


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
