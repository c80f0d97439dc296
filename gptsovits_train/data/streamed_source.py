"""Long recordings with flat memory: decode, resample and cut block by block, clips handed out early.

A source longer than `source_clips.STREAM_MIN_SECONDS` is not held in memory. `analyse_streamed`
(one pool task) runs one pass over the file:

    decode (helper thread) -> resample -> spill file (raw float32, 32 kHz)
                                       -> frame RMS -> silence slicer -> clips -> groups -> sink

- the decoder, resampler, frame RMS and slicer are streaming versions of the whole-file ones and give
  the same bits (`audio.stream`, `audio.slicer.FrameRmsStream`, `ChunkStream`), so the clips are those
  of `source_clips.process_source` for the same file;
- a chunk is final as soon as the silence after it is decided, so clips are known while the rest of
  the file is still being decoded; every `CLIP_GROUP_SECONDS` of clips become a `ClipGroup` that goes
  to `sink` at once (the pool's other workers write it from the spill file with `write_clip_group`
  while this task goes on);
- what only the end can tell (the source's peak above `prepare.max_source_peak`, too much of it
  clipped (`audio.clipping.ClippingCounter`, on the decode thread), pure silence, a decoding error
  part way, the edge trim of a source with a transcript) is decided in the result: a
  source skipped whole after some groups were sent reports `discard=True`, and the caller deletes
  what those groups wrote before the source's record is written.

Memory: one decode block, the RMS tail, and the frame RMS of the whole file (8 bytes per 10 ms).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gptsovits_train.audio.io import AudioLoadError
from gptsovits_train.audio.slicer import ChunkStream, FrameRmsStream, SlicerParams, n_frames, split_long
from gptsovits_train.audio.stream import (
    BLOCK_FRAMES,
    SpillFile,
    SpillWriter,
    StreamResult,
    decode_to_spill,
    stream_info,
)
from gptsovits_train.data.report_types import Skipped, WarningItem
from gptsovits_train.data.source_clips import (
    SourceJob,
    SourceOutcome,
    check_clipping,
    source_skip_reason,
    trim_bounds,
    write_clips,
)

LOG = logging.getLogger(__name__)

#: Clip-writing tasks of a long source cover about this much audio each.
CLIP_GROUP_SECONDS = 60.0


@dataclass
class ClipGroup:
    """Consecutive clips of a streamed source, ready to be written (one pool task).

    Attributes:
        index: 0, 1, ... in the order the groups were found.
        bounds: clip ranges in 32 kHz samples.
        rms: (k,) float64 frames `rms_offset ...` of the source's frame RMS covering every range.
        n_samples: samples in the spill file when the group was sent (every range lies inside).
    """

    index: int
    bounds: list[tuple[int, int]]
    rms: np.ndarray
    rms_offset: int
    n_samples: int


#: Receives each group as soon as it is complete.
GroupSink = Callable[[ClipGroup], None]


@dataclass
class SourceCuts:
    """The result of `analyse_streamed`.

    Attributes:
        outcome: input seconds, load warnings, or why the whole source is skipped.
        n_groups: groups sent to the sink in all (the caller waits for that many).
        discard: the source is skipped whole after groups were sent: delete what they wrote.
        source_peak: peak |x| of the 32 kHz signal.
        cpu: CPU seconds per part for benchmarks: `decode` (+ checks, mix, clipping), `resample`,
            `write` (spill write + peak), `cuts` (frame RMS + slicer + groups); with a helper thread
            the first three run on three threads.
    """

    outcome: SourceOutcome
    n_groups: int
    discard: bool = False
    source_peak: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)


class _Groups:
    """Collects clip ranges into groups of at least `size` samples and sends each to `sink`."""

    def __init__(self, size: int, sink: GroupSink, hop: int) -> None:
        self.size, self.sink, self.hop = size, sink, hop
        self.current: list[tuple[int, int]] = []
        self.samples = 0
        self.sent = 0

    def add(self, bounds: Sequence[tuple[int, int]], rms: np.ndarray, n_samples: int) -> None:
        for start, end in bounds:
            self.current.append((start, end))
            self.samples += end - start
            if self.samples >= self.size:
                self.send(rms, n_samples)

    def send(self, rms: np.ndarray, n_samples: int) -> None:
        if not self.current:
            return
        f0, f1 = self.current[0][0] // self.hop, -(-self.current[-1][1] // self.hop)
        self.sink(ClipGroup(self.sent, self.current, rms[f0:f1].copy(), f0, n_samples))
        self.sent += 1
        self.current, self.samples = [], 0


class StreamCutter:
    """Frame RMS, silence slicer and clip groups of a streamed source, fed its 32 kHz samples in order.

    Fed by `analyse_streamed` from the samples it writes to the spill; split from it so that the
    cutting logic reads on its own.
    """

    def __init__(self, job: SourceJob, spill: Path, sink: GroupSink) -> None:
        self.job, self.spill = job, spill
        sr = job.audio.sampling_rate
        self.params = params = SlicerParams.from_config(job.prepare.slicer, sr)
        self.max_samples = round(job.prepare.slicer.max_clip_seconds * sr)
        self.frames = FrameRmsStream(params.win, params.hop)
        info = stream_info(job.source.path)  # the frame RMS of the whole file is kept: reserve it
        expected = n_frames(math.ceil(info.seconds * sr), params.win, params.hop) + 16 if info else 0
        self.chunks = ChunkStream(params, expected)
        self.groups = _Groups(round(CLIP_GROUP_SECONDS * sr), sink, params.hop)
        self.cpu = 0.0

    def feed(self, samples: np.ndarray, n_flushed: int, peak: float) -> None:
        """The next (n,) samples; `n_flushed`: samples readable from the spill now (these included);
        `peak`: peak |x| so far."""
        start = time.thread_time()
        rms = self.frames.feed(samples)
        self.cpu += time.thread_time() - start
        self.feed_frames(rms, n_flushed, peak)

    def feed_frames(self, rms: np.ndarray, n_flushed: int, peak: float) -> None:
        """The next (k,) frames of the frame RMS, computed elsewhere (instead of `feed`: then the last
        frames, those reaching into the end padding, come here too); `n_flushed` and `peak` as `feed`."""
        start = time.thread_time()
        found = self.chunks.feed(rms)
        # a peak above the limit skips the whole source: send nothing more
        if found and self.job.mode == "slice" and peak <= self.job.prepare.max_source_peak:
            read = SpillFile(self.spill, n_flushed)
            for a, b in found:
                self.groups.add(
                    split_long(read, a, b, self.max_samples, self.params), self.chunks.tagger.rms, n_flushed
                )
        self.cpu += time.thread_time() - start

    def finish(self, decoded: StreamResult | None, error: str | None, frames_fed: bool = False) -> SourceCuts:
        """Decide the rest once the whole file is decoded (`decoded`), or failed with `error`;
        `frames_fed`: every frame came through `feed_frames`."""
        name, out = str(self.job.source.path), SourceOutcome()
        if decoded is None:
            out.skipped.append(Skipped(name, error or "cannot decode audio"))
            return SourceCuts(out, self.groups.sent, discard=self.groups.sent > 0)
        start = time.thread_time()
        out.audio_seconds = decoded.input_seconds
        out.warnings.extend(WarningItem(name, w) for w in decoded.warnings)
        tail = np.zeros(0) if frames_fed else self.frames.finish()
        last = self.chunks.feed(tail) + self.chunks.finish(decoded.n_samples)
        rms, params, n = self.chunks.tagger.rms, self.params, decoded.n_samples
        skipped = not check_clipping(self.job, decoded.clipping, out)
        reason = None if skipped else source_skip_reason(self.job, rms, decoded.peak, params)
        if reason is not None:
            out.skipped.append(Skipped(name, reason))
            skipped = True
        if not skipped:
            read = SpillFile(self.spill, n)
            if self.job.mode == "trim":
                found = trim_bounds(self.job, rms, n, params, out)
            else:
                found = [piece for a, b in last for piece in split_long(read, a, b, self.max_samples, params)]
            self.groups.add(found, rms, n)
            self.groups.send(rms, n)
        self.cpu += time.thread_time() - start
        return SourceCuts(
            out, self.groups.sent, discard=skipped and self.groups.sent > 0, source_peak=decoded.peak
        )


def analyse_streamed(
    job: SourceJob,
    spill: Path,
    sink: GroupSink,
    helper_thread: bool = False,
    *,
    decode_block: int = BLOCK_FRAMES,
) -> SourceCuts:
    """Decode a long source into `spill` block by block, sending its clips to `sink` as they are found.

    The clips sent over the whole call are those `process_source` finds for the same file, for any
    `decode_block` (input frames per block). A per-file problem becomes a skip in the outcome; nothing
    is raised for bad audio. `helper_thread`: decode, resample and the rest run as three threads.
    """
    cutter = StreamCutter(job, spill, sink)

    def on_output(samples: np.ndarray, writer: SpillWriter) -> None:
        cutter.feed(samples, writer.flush(), writer.peak)  # the slicer and the groups read the spill

    try:
        decoded = decode_to_spill(
            job.source.path,
            job.audio.sampling_rate,
            spill,
            block_frames=decode_block,
            helper_thread=helper_thread,
            on_output=on_output,
        )
    except AudioLoadError as exc:  # the spill stays: groups already sent may still be read from it
        return cutter.finish(None, str(exc))
    cuts = cutter.finish(decoded, None)
    cpu = dict(decoded.cpu)
    cuts.cpu = {
        "decode": cpu["decode"],
        "resample": cpu["resample"],
        "write": cpu["output"] - cutter.cpu,
        "cuts": cutter.cpu,
    }
    return cuts


def write_clip_group(job: SourceJob, spill: Path, group: ClipGroup) -> tuple[SourceOutcome, list[float]]:
    """Write the clips of `group` from the spill file (one task of the pool); returns the outcome and
    the peaks it repaired."""
    out = SourceOutcome()
    read = SpillFile(spill, group.n_samples)
    repaired = write_clips(job, read, group.rms, group.rms_offset, group.bounds, out)
    return out, repaired


# Where `analyse_task` sends its groups: set in each pool worker by its initializer (a pipe to the
# parent), or in the parent itself for in-process runs (a plain queue).
_installed: dict[str, Any] = {"queue": None}


def set_group_queue(groups: Any) -> None:
    """Install the queue (anything with `put`) that `analyse_task` sends `(source_index, group)` to."""
    _installed["queue"] = groups


def analyse_task(job: SourceJob, spill: Path, helper_thread: bool, source_index: int) -> SourceCuts:
    """`analyse_streamed` as a pool task: its groups go to the installed queue, tagged with
    `source_index`."""
    groups = _installed["queue"]
    if groups is None:
        raise RuntimeError("analyse_task needs set_group_queue() first")
    return analyse_streamed(job, spill, lambda group: groups.put((source_index, group)), helper_thread)
