"""One long recording decoded and resampled in independent segments, with the bits of one stream.

`audio.stream.decode_to_spill` runs one soxr stream over the whole file: the resampler is the one
stage that cannot be split naively, because soxr filters in FFT blocks whose rounding depends on where
the stream started, so a stream started part way differs from the single stream in the last bit of
most samples. It does not differ when it starts at a multiple of the rate pair's *aligned period*
(`ALIGNED_PERIODS`, found by `scripts/find_resample_periods.py`): after a short warm-up such a stream
emits exactly the samples of the stream started at 0. So a segment `[start, end)` of the input can be
resampled on its own by starting its stream `warm-up` periods before `start` (aligned), dropping the
outputs that belong before `start`, and reading on past `end` until the outputs up to `end` are out.

`decode_segment` does that for one segment and writes its part of the 32 kHz signal into the shared
spill file at its own offset; `SegmentPlan` splits a file. Segments of one file can then run in as
many processes as there are cores; `data.segmented_source` cuts the result in order.

`aligned_period` verifies the table entry once per process (a noise signal resampled both ways must
match bit for bit; a different soxr build may block differently) and returns None for rate pairs it
cannot vouch for, which then use the single stream.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from gptsovits_train.audio.clipping import ClippingCounter
from gptsovits_train.audio.io import RESAMPLE_QUALITY, AudioLoadError, check_audio_file
from gptsovits_train.audio.slicer import FrameRmsStream, n_frames
from gptsovits_train.audio.stream import BLOCK_FRAMES, libsndfile_error, open_checked, read_mono, stream_info
from gptsovits_train.fileio import naming_write_failures

LOG = logging.getLogger(__name__)

#: (input rate, output rate) -> input frames between stream starts that reproduce the single stream
#: (soxr "HQ", python-soxr 1.x; `scripts/find_resample_periods.py`). Checked at run time.
ALIGNED_PERIODS: dict[tuple[int, int], int] = {
    (8000, 32000): 830,
    (12000, 32000): 2460,
    (16000, 32000): 830,
    (22050, 32000): 361620,
    (24000, 32000): 2490,
    (44100, 32000): 109368,
    (48000, 32000): 2202,
    (88200, 32000): 218736,
    (96000, 32000): 4404,
}
#: Input seconds a segment's stream runs before its first kept sample (rounded up to whole periods,
#: at least one). The largest warm-up measured for the table's rates is 0.1 s of output.
WARMUP_SECONDS = 0.25
#: Input seconds per segment (rounded to whole periods): at most this, ...
SEGMENT_SECONDS = 120.0
#: ... and about a quarter of a worker's share of the file, but not below this (each segment's stream
#: runs at least one period of warm-up: 2.5 s for 44.1 kHz input).
MIN_SEGMENT_SECONDS = 30.0
#: Bytes per `pwrite` into the spill file.
WRITE_BYTES = 1 << 18
#: Subtypes whose frames libsndfile seeks to exactly (the decoded samples after a seek are those a
#: sequential read gives at that position).
SEEKABLE_SUBTYPES = frozenset(
    {"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"}
)
SEEKABLE_FORMATS = frozenset({"WAV", "WAVEX", "AIFF", "FLAC", "W64", "RF64", "CAF"})


def _stream(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """(n,) float32 -> the whole-stream output (flushed)."""
    rs = soxr.ResampleStream(sr_in, sr_out, 1, dtype="float32", quality=RESAMPLE_QUALITY)
    return np.concatenate([rs.resample_chunk(x), rs.resample_chunk(np.zeros(0, np.float32), last=True)])


def warmup_frames(period: int, sr_in: int) -> int:
    """Input frames of warm-up: whole periods, at least one, at least `WARMUP_SECONDS`."""
    return period * max(1, math.ceil(WARMUP_SECONDS * sr_in / period))


@functools.cache
def aligned_period(sr_in: int, sr_out: int) -> int | None:
    """The aligned period for this rate pair, verified on this soxr build, or None (use one stream)."""
    if sr_in == sr_out:
        return 1  # no resampler: any split is exact
    period = ALIGNED_PERIODS.get((sr_in, sr_out))
    if period is None:
        return None
    warm = warmup_frames(period, sr_in)
    split = period + warm  # a segment starting here begins its stream at `period`
    x = (0.3 * np.random.default_rng(0).standard_normal(split + sr_in // 2)).astype(np.float32)
    full = _stream(x, sr_in, sr_out)
    piece = _stream(x[split - warm :], sr_in, sr_out)
    o_split = split * sr_out // sr_in
    o_warm = warm * sr_out // sr_in
    if not np.array_equal(piece[o_warm:], full[o_split:]):
        LOG.info("soxr blocks %d -> %d Hz differently here: long files use one stream", sr_in, sr_out)
        return None
    return period


@dataclass(frozen=True)
class SegmentPlan:
    """Where one file is split: input frame boundaries ``[0, b1, ..., n_frames]`` (inner ones multiples of
    `period`) and the output offsets they map to."""

    sr_in: int
    sr_out: int
    period: int
    bounds: tuple[int, ...]
    win: int  # the slicer's frame RMS window and hop, in output samples
    hop: int

    @classmethod
    def make(
        cls, n_frames: int, sr_in: int, sr_out: int, period: int, seconds: float, win: int, hop: int
    ) -> SegmentPlan:
        """Segments of about `seconds`; one segment when the file is shorter than two."""
        step = max(1, round(seconds * sr_in / period)) * period
        inner = list(range(step, n_frames - step // 2, step))
        return cls(sr_in, sr_out, period, (0, *inner, n_frames), win, hop)

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def out_offset(self, frame: int) -> int:
        """Output sample index of input frame `frame` (an inner boundary: exact)."""
        return frame * self.sr_out // self.sr_in

    def own_frames(self, index: int, n_out: int) -> tuple[int, int]:
        """The RMS frames ``[first, last)`` segment `index` computes from its own `n_out` samples: those
        whose whole window lies in them (at the file's ends, the zero padding counts as theirs).
        The few frames whose window crosses an inner edge are left to the caller."""
        start = self.out_offset(self.bounds[index])
        end = start + n_out
        half = self.win // 2
        first = 0 if index == 0 else -(-(start + half) // self.hop)
        if index == len(self) - 1:
            return first, n_frames(end, self.win, self.hop)
        return first, max(first, (end + half - self.win) // self.hop + 1)


@dataclass
class SegmentResult:
    """What `decode_segment` found in its input range ``[start, end)``.

    Attributes:
        n_in: input frames read in the range (fewer than planned only for the last segment).
        n_out: output samples written to the spill (from `out_offset(start)`).
        peak: peak |x| of those outputs.
        n_bad: NaN/Inf samples in the range (the outputs stop at the first block with one).
        rms: the frames `plan.own_frames(index, n_out)` of the slicer's frame RMS (float64).
        clip_top: peak |x| of the decoded mono input in the range.
        clip_count: samples of the range in flat runs at its own top or at 1.0 (`ClippingCounter`);
            the sum over segments bounds the whole file's count (see `data.segmented_source`).
        error: an `AudioLoadError` message (nothing else is valid then).
        cpu: CPU seconds: `decode` (+ mix, clipping), `resample` (+ peak and frame RMS), `write`
            (spill).
    """

    index: int
    n_in: int = 0
    n_out: int = 0
    peak: float = 0.0
    n_bad: int = 0
    clip_top: float = 0.0
    clip_count: int = 0
    error: str | None = None
    rms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cpu: dict[str, float] = field(default_factory=dict)


class _Outputs:
    """Takes the resampler's outputs from index `skip` on, up to `limit` of them (None: everything):
    writes them to the spill file `fd` from sample offset `base` on, and computes their frames of the
    slicer's frame RMS as they come (`frames`; the caller adds `frames.finish()` at the file's end)."""

    def __init__(self, fd: int, base: int, skip: int, limit: int | None, win: int, hop: int) -> None:
        self.fd, self.base, self.skip, self.limit = fd, base, skip, limit
        self.emitted = 0  # outputs seen (kept or not)
        self.kept = 0
        self.peak = 0.0
        self.frames = FrameRmsStream(win, hop, skip=base)
        self.rms: list[np.ndarray] = []
        self.write_cpu = 0.0

    def full(self) -> bool:
        return self.limit is not None and self.kept >= self.limit

    def add(self, out: np.ndarray) -> None:
        lo = max(0, self.skip - self.emitted)
        self.emitted += out.shape[0]
        keep = out[lo:]
        if self.limit is not None:
            keep = keep[: self.limit - self.kept]
        if not keep.size:
            return
        self.peak = max(self.peak, float(np.max(np.abs(keep))))
        self.rms.append(self.frames.feed(keep))
        start = time.thread_time()
        view, offset = (
            np.ascontiguousarray(keep, dtype=np.float32).data.cast("B"),
            4 * (self.base + self.kept),
        )
        while view:  # in pieces: one 15 MB `pwrite` costs 7x the CPU of the same bytes in 190 KB pieces
            written = os.pwrite(self.fd, view[:WRITE_BYTES], offset)  # OSError: the caller names the file
            if written <= 0:
                raise OSError(f"cannot write the spill file (pwrite returned {written})")
            view, offset = view[written:], offset + written
        self.write_cpu += time.thread_time() - start
        self.kept += keep.shape[0]


def decode_segment(path: Path, plan: SegmentPlan, index: int, spill: Path) -> SegmentResult:
    """Decode and resample segment `index` of `plan` into `spill` (which exists) at its output offset,
    and compute its own frames of the slicer's frame RMS (`SegmentPlan.own_frames`).

    The samples written are those `decode_to_spill` writes at the same positions, bit for bit. Holds a
    decode block at a time. Per-file problems come back in `SegmentResult.error`; OSError (the spill)
    is raised (`OutputWriteError` for a full disk or an unwritable folder).
    """
    res = SegmentResult(index, cpu={"decode": 0.0, "resample": 0.0})
    with naming_write_failures(spill):  # a full disk: one line naming the spill
        fd = os.open(spill, os.O_WRONLY)
        try:
            outs, clipping = _decode_range(path, plan, index, res, fd)
        except AudioLoadError as exc:
            res.error = str(exc)
            return res
        finally:
            os.close(fd)
    res.n_out, res.peak = outs.kept, outs.peak
    res.clip_top, res.clip_count = clipping.top, clipping.flat_count()
    if index == len(plan) - 1:
        outs.rms.append(outs.frames.finish())
    res.rms = np.concatenate(outs.rms) if outs.rms else np.zeros(0)
    res.cpu["write"] = outs.write_cpu
    res.cpu["resample"] -= outs.write_cpu  # measured around `add`, which writes
    return res


def _decode_range(
    path: Path, plan: SegmentPlan, index: int, res: SegmentResult, fd: int
) -> tuple[_Outputs, ClippingCounter]:
    """The decoding loop of `decode_segment`: fills `res.n_in`, `res.n_bad` and `res.cpu`.

    Raises:
        AudioLoadError: the file cannot be decoded here, or ends before its header says.
    """
    start, end = plan.bounds[index], plan.bounds[index + 1]
    last = index == len(plan) - 1
    cpu = res.cpu
    resampled = plan.sr_in != plan.sr_out
    begin = max(0, start - warmup_frames(plan.period, plan.sr_in)) if resampled else start
    o_start = plan.out_offset(start)
    limit = None if last else plan.out_offset(end) - o_start
    outs = _Outputs(fd, o_start, o_start - plan.out_offset(begin), limit, plan.win, plan.hop)
    clipping = ClippingCounter()
    with open_checked(path) as fh:
        rs = (
            soxr.ResampleStream(plan.sr_in, plan.sr_out, 1, dtype="float32", quality=RESAMPLE_QUALITY)
            if resampled
            else None
        )
        pcm16 = str(fh.subtype) == "PCM_16" and int(fh.channels) <= 2
        try:
            fh.seek(begin)
        except sf.LibsndfileError as exc:
            raise libsndfile_error(exc) from None
        pos = begin
        while not outs.full():
            # blocks never straddle `start` or `end`, so each one is wholly in the range or out of it
            edge = start if pos < start else end if pos < end else None
            size = BLOCK_FRAMES if edge is None else min(BLOCK_FRAMES, edge - pos)
            t0 = time.thread_time()
            block = read_mono(fh, size, pcm16)
            if block is None:
                break
            mono, bad = block
            if start <= pos < end:
                res.n_in += mono.shape[0]
                res.n_bad += bad
                if not res.n_bad:
                    clipping.update(mono)
            pos += mono.shape[0]
            t1 = time.thread_time()
            cpu["decode"] += t1 - t0
            if res.n_bad:
                if pos >= end:
                    break
                continue  # the file is rejected; count the rest of the range for the message
            outs.add(rs.resample_chunk(mono, last=False) if rs is not None else mono)
            cpu["resample"] += time.thread_time() - t1
        if rs is not None and not res.n_bad and not outs.full():
            # the end of the file (the last segment, or one ending just before it): flush, as the single
            # stream does there
            t1 = time.thread_time()
            outs.add(rs.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
            cpu["resample"] += time.thread_time() - t1
    if not res.n_bad and limit is not None and not outs.full():
        raise AudioLoadError("corrupt or truncated audio (fewer frames than its header says)")
    return outs, clipping


def segmentable(path: Path, sr_out: int, workers: int, win: int, hop: int) -> SegmentPlan | None:
    """The plan for decoding `path` in segments on `workers` processes, or None when it must be one
    stream: one worker, a format libsndfile does not seek exactly, a rate pair without a verified
    period, or a file shorter than two segments."""
    if workers < 2:
        return None
    try:
        check_audio_file(path)  # a bad file goes the single-stream way, which reports it
    except AudioLoadError:
        return None
    info = stream_info(path)
    if info is None or info.format not in SEEKABLE_FORMATS or info.subtype not in SEEKABLE_SUBTYPES:
        return None
    period = aligned_period(info.sample_rate, sr_out)
    if period is None:
        return None
    seconds = min(SEGMENT_SECONDS, max(MIN_SEGMENT_SECONDS, info.seconds / (4 * workers)))
    plan = SegmentPlan.make(info.frames, info.sample_rate, sr_out, period, seconds, win, hop)
    return plan if len(plan) >= 2 else None
