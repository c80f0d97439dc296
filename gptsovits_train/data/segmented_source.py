"""A long source decoded in parallel segments and cut in order, for runs with cores to spare.

`data.streamed_source.analyse_streamed` decodes, resamples and cuts a long recording in one task, so
one file keeps at most one worker busy with its resampling (the one stage that is sequential there).
When there are more workers than sources, `prepare` instead splits a long file into segments
(`audio.segments`): every worker decodes and resamples segments into the shared spill file, bit for
bit what the single stream writes, and this class, in the parent process, feeds the segments in order
to the same `StreamCutter`, whose clip groups go out as write tasks at once:

    segment tasks (any worker) -> spill file -> StreamCutter (here, in order) -> clip groups (any worker)

The clips are therefore those of `analyse_streamed` and of `process_source` for the same file.

What the single stream decides at the end is decided from the segments' results: the first decoding
error, NaN/Inf samples, the peak, and clipping. Clipping is a property of the whole signal (the top
and runs that may cross a segment edge), so each segment reports its flat-run count at its *own* top
or at 1.0 (`ClippingCounter`). The whole file's count is at most their sum plus ``2 * (MIN_RUN - 1)``
per inner edge: a sample near the file's top is near its segment's top (a magnitude outside the band
of a level is outside the band of every higher level, see `ClippingCounter`), a sample near 1.0 is
counted by its segment (near 1.0 when its top is above 1.0, near its top when its top is at most 1.0),
and only a run cut by an edge can lose its two short ends. When that bound is within
`prepare.clipping_warn_share` (the usual case) no warning or skip can follow, and the bound stands in
for the share; otherwise `audio.stream.clipping_of` measures it exactly in one more decoding pass.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gptsovits_train.audio.clipping import MIN_RUN, Clipping
from gptsovits_train.audio.io import format_warnings
from gptsovits_train.audio.segments import SegmentPlan, SegmentResult, segmentable
from gptsovits_train.audio.slicer import SlicerParams, frame_rms_range
from gptsovits_train.audio.stream import SpillFile, StreamResult, clipping_of, stream_info
from gptsovits_train.data.source_clips import SourceJob
from gptsovits_train.data.streamed_source import GroupSink, SourceCuts, StreamCutter
from gptsovits_train.fileio import naming_write_failures

LOG = logging.getLogger(__name__)


def segment_plan(job: SourceJob, workers: int) -> SegmentPlan | None:
    """How to split `job`'s file for `workers` processes, or None when it is decoded as one stream."""
    params = SlicerParams.from_config(job.prepare.slicer, job.audio.sampling_rate)
    return segmentable(job.source.path, job.audio.sampling_rate, workers, params.win, params.hop)


@dataclass
class SegmentedSource:
    """Progress of one source decoded in segments: results so far, and how many were cut."""

    job: SourceJob
    spill: Path
    plan: SegmentPlan
    cutter: StreamCutter
    results: dict[int, SegmentResult] = field(default_factory=dict)
    fed: int = 0  # segments fed to the cutter, in order
    frames: int = 0  # RMS frames fed to the cutter
    started: int = 0  # segments handed to workers (0, 1, ... in order)
    peak: float = 0.0
    cpu: float = 0.0  # reading the spill back here

    @classmethod
    def start(cls, job: SourceJob, spill: Path, plan: SegmentPlan, sink: GroupSink) -> SegmentedSource:
        """Create the (empty) spill file the segment tasks write into; `sink` receives the clip groups."""
        with naming_write_failures(spill):
            spill.parent.mkdir(parents=True, exist_ok=True)
            with open(spill, "wb"):
                pass
        return cls(job, spill, plan, StreamCutter(job, spill, sink))

    def to_start(self, in_flight: int) -> list[int]:
        """Segments to hand out now so that `in_flight` are out (started, not yet added): few at a
        time, so that the clip groups they produce get to the workers between them."""
        running = self.started - len(self.results)
        ready = list(range(self.started, min(len(self.plan), self.started + max(0, in_flight - running))))
        self.started += len(ready)
        return ready

    def add(self, result: SegmentResult) -> SourceCuts | None:
        """`receive` then `cut`."""
        self.receive(result)
        return self.cut()

    def receive(self, result: SegmentResult) -> None:
        """Take one segment's result."""
        self.results[result.index] = result

    def cut(self) -> SourceCuts | None:
        """Cut every segment now complete in order. Returns the source's result once every segment is
        in, else None."""
        while self.fed in self.results:
            seg = self.results[self.fed]
            if seg.error is not None or seg.n_bad:
                break  # the source is skipped: nothing from here on is cut
            first = self.plan.out_offset(self.plan.bounds[self.fed])
            end = first + seg.n_out
            own, _ = self.plan.own_frames(self.fed, seg.n_out)
            start = time.thread_time()
            # the frames whose window crosses the edge before this segment, read from the spill
            plan, read = self.plan, SpillFile(self.spill, end)
            edge = frame_rms_range(read, end, plan.win, plan.hop, self.frames, own)
            self.cpu += time.thread_time() - start
            self.peak = max(self.peak, seg.peak)
            self.cutter.feed_frames(np.concatenate((edge, seg.rms)), end, self.peak)
            self.frames = own + seg.rms.shape[0]
            seg.rms = seg.rms[:0]  # the cutter keeps the frames: no second copy of them
            self.fed += 1
        return self._finish() if len(self.results) == len(self.plan) else None

    def _finish(self) -> SourceCuts:
        ordered = [self.results[k] for k in range(len(self.plan))]
        errors = [seg.error for seg in ordered if seg.error is not None]
        if errors:  # the single stream stops at the first one
            return self.cutter.finish(None, errors[0])
        n_in = sum(seg.n_in for seg in ordered)
        bad = sum(seg.n_bad for seg in ordered)
        if n_in == 0:
            return self.cutter.finish(None, "no audio samples")
        if bad:
            return self.cutter.finish(None, f"{bad} NaN/Inf samples")
        info = stream_info(self.job.source.path)
        warnings = format_warnings(info.subtype, info.channels) if info is not None else []
        decoded = StreamResult(
            n_samples=sum(seg.n_out for seg in ordered),
            peak=max(seg.peak for seg in ordered),
            input_seconds=n_in / self.plan.sr_in,
            clipping=self._clipping(ordered, n_in),
            warnings=warnings,
        )
        cuts = self.cutter.finish(decoded, None, frames_fed=True)
        cuts.cpu = {
            part: sum(seg.cpu.get(part, 0.0) for seg in ordered) for part in ("decode", "resample", "write")
        }
        cuts.cpu["cuts"] = self.cutter.cpu + self.cpu
        return cuts

    def _clipping(self, ordered: list[SegmentResult], n_in: int) -> Clipping:
        """The source's clipping: the bound of the module docstring when no warning can follow from it
        (its share is then an upper bound), else the exact figure from one more decoding pass."""
        pcfg = self.job.prepare
        bound = sum(seg.clip_count for seg in ordered) + 2 * (MIN_RUN - 1) * (len(ordered) - 1)
        if bound <= min(pcfg.clipping_warn_share, pcfg.clipping_skip_share) * n_in:
            return Clipping(bound / n_in, max(seg.clip_top for seg in ordered))
        LOG.info("%s: measuring its clipping in one more pass", self.job.source.path)
        return clipping_of(self.job.source.path)
