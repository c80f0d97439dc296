"""A long file decoded in parallel segments gives the bits, clips and decisions of the single stream.

The reference everywhere is the whole-file path (`load_audio` + `resample`, `process_source`), which
holds the file in memory and resamples it with one soxr call.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import gptsovits_train.audio.segments as seg_mod
import gptsovits_train.data.prepare as prep_mod
import gptsovits_train.data.streamed_source as streamed_mod
from gptsovits_train.audio.clipping import detect_clipping
from gptsovits_train.audio.io import load_audio, resample
from gptsovits_train.audio.segments import (
    ALIGNED_PERIODS,
    SegmentPlan,
    SegmentResult,
    aligned_period,
    decode_segment,
    segmentable,
)
from gptsovits_train.audio.slicer import FrameRmsStream, SlicerParams, frame_rms
from gptsovits_train.config import Config
from gptsovits_train.data.manifest import Clip
from gptsovits_train.data.prepare import prepare
from gptsovits_train.data.segmented_source import SegmentedSource
from gptsovits_train.data.source_clips import SourceJob, process_source
from gptsovits_train.data.sources import Source
from gptsovits_train.data.streamed_source import ClipGroup, SourceCuts
from gptsovits_train.errors import Interrupted
from gptsovits_train.fileio import OutputWriteError
from gptsovits_train.layout import DatasetLayout
from tests.test_prepare_scale import _clip_files, _late_problem_input, speech_like

SR = 32000
_PARAMS = SlicerParams.from_config(Config().prepare.slicer, SR)
WIN_HOP = (_PARAMS.win, _PARAMS.hop)


def _decode_all(path: Path, plan: SegmentPlan, spill: Path) -> tuple[np.ndarray, list[SegmentResult]]:
    """Every segment decoded one after the other (in any order: here last first) into `spill`."""
    with open(spill, "wb"):
        pass
    results = [decode_segment(path, plan, k, spill) for k in reversed(range(len(plan)))]
    return np.fromfile(spill, dtype=np.float32), sorted(results, key=lambda r: r.index)


def _plan(path: Path, seconds: float) -> SegmentPlan:
    info = sf.info(str(path))
    period = aligned_period(int(info.samplerate), SR)
    assert period is not None
    return SegmentPlan.make(int(info.frames), int(info.samplerate), SR, period, seconds, *WIN_HOP)


# ------------------------------------------------------------------------------ bits of the stream
@pytest.mark.parametrize(("win", "hop"), [(1280, 320), (1000, 300), (960, 320)])
@pytest.mark.parametrize("skip", [1, 319, 320, 641, 5000])
def test_frame_rms_stream_started_part_way(win: int, hop: int, skip: int) -> None:
    """`FrameRmsStream(skip=...)` fed the signal from sample `skip` on, in random pieces, gives the
    whole signal's frames from the first whose window starts at or after `skip`."""
    rng = np.random.default_rng(skip)
    x = rng.standard_normal(20_000).astype(np.float32)
    whole = frame_rms(x, win, hop)
    stream = FrameRmsStream(win, hop, skip=skip)
    cuts = np.sort(rng.integers(skip, len(x), 6))
    got = [stream.feed(piece) for piece in np.split(x[skip:], cuts - skip)] + [stream.finish()]
    first = -(-(skip + win // 2) // hop)
    assert first * hop - win // 2 >= skip > (first - 1) * hop - win // 2
    assert np.array_equal(np.concatenate(got), whole[first:])


@pytest.mark.parametrize("rate", sorted({sr for sr, _ in ALIGNED_PERIODS} | {SR}))
def test_segments_give_the_whole_file_resampling_bit_for_bit(tmp_path: Path, rate: int) -> None:
    """Every rate of the table (and 32 kHz, no resampling): three or more segments, each starting its
    own stream, equal one soxr call over the whole decoded file."""
    period = aligned_period(rate, SR)
    assert period is not None  # the table entry holds on this soxr build
    seconds = max(period / rate, 3.0)
    n = int(rate * seconds * 3.4)
    x = (0.25 * np.random.default_rng(rate).standard_normal((n, 2))).astype(np.float32)
    path = tmp_path / "x.wav"
    sf.write(path, x, rate, subtype="PCM_16")
    plan = _plan(path, seconds)
    assert len(plan) >= 3 and all(b % period == 0 for b in plan.bounds[1:-1])
    got, results = _decode_all(path, plan, tmp_path / "s.f32")
    loaded = load_audio(path)
    want = resample(loaded.samples, rate, SR)
    assert got.shape == want.shape and np.array_equal(got, want)
    assert sum(r.n_out for r in results) == want.shape[0]
    assert sum(r.n_in for r in results) == n
    assert max(r.peak for r in results) == float(np.max(np.abs(want)))
    # each segment's frames of the slicer's RMS; only a few frames at each inner edge are left out
    whole_rms = frame_rms(want, *WIN_HOP)
    spans = [plan.own_frames(r.index, r.n_out) for r in results]
    for r, (first, last) in zip(results, spans, strict=True):
        assert np.array_equal(r.rms, whole_rms[first:last])
    assert spans[0][0] == 0 and spans[-1][1] == whole_rms.shape[0]
    assert all(0 < b[0] - a[1] <= WIN_HOP[0] // WIN_HOP[1] for a, b in itertools.pairwise(spans))


FORMATS = [
    *[("WAV", sub, 2) for sub in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW")],
    ("WAV", "PCM_16", 3),
    ("WAV", "FLOAT", 1),
    ("AIFF", "PCM_S8", 1),
    ("AIFF", "PCM_16", 2),
    ("FLAC", "PCM_16", 1),
    ("FLAC", "PCM_24", 2),
    ("W64", "PCM_16", 2),
    ("RF64", "PCM_16", 2),
    ("CAF", "PCM_16", 2),
    ("WAVEX", "PCM_24", 4),
]


@pytest.mark.parametrize(("fmt", "subtype", "channels"), FORMATS)
def test_segments_of_every_seekable_format(tmp_path: Path, fmt: str, subtype: str, channels: int) -> None:
    """Every format and subtype `segmentable` accepts: a seek gives the samples a sequential read does."""
    assert fmt in seg_mod.SEEKABLE_FORMATS and subtype in seg_mod.SEEKABLE_SUBTYPES
    rate = 48000
    x = (0.25 * np.random.default_rng(channels).standard_normal((rate * 7, channels))).astype(np.float32)
    path = tmp_path / f"x.{ {'WAVEX': 'wav'}.get(fmt, fmt.lower()) }"
    sf.write(path, x, rate, format=fmt, subtype=subtype)
    assert sf.info(str(path)).format == fmt
    got, _ = _decode_all(path, _plan(path, 2.0), tmp_path / "s.f32")
    assert np.array_equal(got, resample(load_audio(path).samples, rate, SR))


def test_every_accepted_format_and_subtype_is_tested() -> None:
    assert {f for f, _, _ in FORMATS} == seg_mod.SEEKABLE_FORMATS
    assert {s for _, s, _ in FORMATS} == seg_mod.SEEKABLE_SUBTYPES


def test_a_wrong_period_is_caught_by_the_check_and_long_files_use_one_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ALIGNED_PERIODS, (44100, SR), 441 * 100)  # aligned with the rates, not with soxr
    aligned_period.cache_clear()
    try:
        assert aligned_period(44100, SR) is None
        path = tmp_path / "x.wav"
        sf.write(path, np.zeros((44100 * 30, 1), np.float32), 44100)
        monkeypatch.setattr(seg_mod, "SEGMENT_SECONDS", 5.0)
        assert segmentable(path, SR, 2, *WIN_HOP) is None
    finally:
        aligned_period.cache_clear()
    assert aligned_period(11025, SR) is None  # not in the table
    assert aligned_period(SR, SR) == 1


def test_what_is_not_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seg_mod, "SEGMENT_SECONDS", 5.0)
    x = (0.1 * np.random.default_rng(0).standard_normal(48000 * 12)).astype(np.float32)
    wav, ogg, short = tmp_path / "x.wav", tmp_path / "x.ogg", tmp_path / "short.wav"
    sf.write(wav, x, 48000)
    sf.write(ogg, x, 48000)
    sf.write(short, x[: 48000 * 7], 48000)
    plan = segmentable(wav, SR, 2, *WIN_HOP)
    assert plan is not None and len(plan) == 2
    assert segmentable(wav, SR, 1, *WIN_HOP) is None  # one worker
    assert segmentable(ogg, SR, 2, *WIN_HOP) is None  # a compressed stream: seeking is not exact
    assert segmentable(short, SR, 2, *WIN_HOP) is None  # shorter than two segments


# ------------------------------------------------------------------------- decisions at the end
def _job(path: Path, root: Path) -> SourceJob:
    cfg = Config()
    src = Source(path=path, id="long", transcript=None, speaker="spk", language="en")
    return SourceJob(src, "slice", False, False, root, cfg.audio, cfg.prepare)


def _segmented_outcome(
    path: Path, tmp_path: Path, seconds: float
) -> tuple[SegmentedSource, SourceCuts, list[ClipGroup]]:
    """Decode `path` in segments in this process and cut it; returns the source, its result, its groups."""
    job, spill = _job(path, tmp_path / "ds"), tmp_path / "spill.f32"
    groups: list[ClipGroup] = []
    source = SegmentedSource.start(job, spill, _plan(path, seconds), groups.append)
    cuts = None
    for k in reversed(range(len(source.plan))):  # out of order: the cutter waits for segment 0
        cuts = source.add(decode_segment(path, source.plan, k, spill))
        assert (cuts is None) == (k > 0)
    assert cuts is not None
    return source, cuts, groups


@pytest.mark.parametrize("where", ["inside", "across_an_edge"])
def test_clipping_warning_is_the_whole_files(tmp_path: Path, where: str) -> None:
    """Flat tops above the warning share: the exact measure runs and gives the in-memory message."""
    rate = 48000
    rng = np.random.default_rng(12)
    pattern = [(float(rng.uniform(1.0, 3.0)), float(rng.uniform(0.35, 1.0))) for _ in range(12)]
    x = speech_like(pattern, rate, seed=13)[: 20 * rate]
    x *= np.float32(0.8 / np.abs(x).max())
    edge = 2202 * round(5.0 * rate / 2202)  # the first inner boundary of 5 s segments
    lo = edge - rate // 2 if where == "across_an_edge" else rate
    x[lo : lo + rate] = np.clip(10 * x[lo : lo + rate], -0.9, 0.9)
    path = tmp_path / "clipped.wav"
    sf.write(path, x, rate, subtype="FLOAT")
    source, cuts, _ = _segmented_outcome(path, tmp_path, 5.0)
    assert source.plan.bounds[1] == edge
    whole = process_source(_job(path, tmp_path / "ref"))
    got = cuts.outcome.warnings
    assert [w.message for w in got] == [w.message for w in whole.warnings]
    assert any("clipped" in w.message for w in whole.warnings)


def test_unclipped_source_needs_no_extra_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Speech without flat tops: the segments' bound settles it (the exact pass would fail here)."""
    import gptsovits_train.data.segmented_source as segsrc_mod

    def no_pass(path: Path) -> None:
        raise AssertionError("no extra pass expected")

    monkeypatch.setattr(segsrc_mod, "clipping_of", no_pass)
    x = speech_like([(2.0, 0.5)] * 8, 48000, seed=3)
    path = tmp_path / "fine.wav"
    sf.write(path, x, 48000, subtype="PCM_16")
    _, cuts, groups = _segmented_outcome(path, tmp_path, 5.0)
    assert detect_clipping(load_audio(path).samples).share == 0.0
    assert not cuts.outcome.warnings and groups


def test_nan_count_and_first_error_are_the_single_streams(tmp_path: Path) -> None:
    rate = 48000
    x = (0.2 * np.random.default_rng(1).standard_normal((rate * 12, 2))).astype(np.float32)
    edge = 2202 * round(5.0 * rate / 2202)
    x[edge - 3 : edge + 4, 0] = np.nan  # across the edge, one channel ...
    x[rate * 11, :] = np.inf  # ... and both channels of one frame in the last segment
    path = tmp_path / "nan.wav"
    sf.write(path, x, rate, subtype="FLOAT")
    with pytest.raises(Exception, match="9 NaN/Inf samples"):
        load_audio(path)
    _, cuts, groups = _segmented_outcome(path, tmp_path, 5.0)
    assert [s.reason for s in cuts.outcome.skipped] == ["9 NaN/Inf samples"]
    assert not groups

    # decoding errors: the first segment's wins, and a source with clips already sent is discarded
    job = _job(path, tmp_path / "e")
    plan = SegmentPlan(rate, SR, 2202, (0, 2202 * 100, 2202 * 200, 2202 * 300), *WIN_HOP)
    sent: list[ClipGroup] = []
    errs = SegmentedSource.start(job, tmp_path / "e.f32", plan, sent.append)
    assert errs.add(SegmentResult(2, error="corrupt or truncated audio (libsndfile: late)")) is None
    assert errs.add(SegmentResult(0, n_in=2202 * 100)) is None
    done = errs.add(SegmentResult(1, error="corrupt or truncated audio (libsndfile: early)"))
    assert done is not None and [s.reason for s in done.outcome.skipped] == [
        "corrupt or truncated audio (libsndfile: early)"
    ]


# ------------------------------------------------------------------------------- whole prepare
@pytest.fixture
def long_wav(tmp_path: Path) -> Path:
    """A 75 s 44.1 kHz stereo recording (as in test_prepare_scale)."""
    rng = np.random.default_rng(5)
    pattern = [(float(rng.uniform(1.0, 9.0)), float(rng.uniform(0.35, 1.2))) for _ in range(14)]
    mono = speech_like(pattern, 44100, seed=6)[: 75 * 44100]
    path = tmp_path / "in" / "long.wav"
    path.parent.mkdir()
    sf.write(path, np.stack([mono, 0.8 * mono], axis=1), 44100, subtype="PCM_16")
    return path


def _reference(path: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    with monkeypatch.context() as mp:
        mp.setattr(prep_mod, "_needs_stream", lambda job: False)
        prepare([path], out, Config(), slice_only=True, language="en", workers=1, progress=False)
    return _clip_files(out)


def _spy_segments(monkeypatch: pytest.MonkeyPatch, groups: list[int] | None = None) -> list[int]:
    """The segment counts of the sources `prepare` decodes in segments (the parent creates a
    SegmentedSource for each); `groups` gets one entry per clip group they send."""
    started: list[int] = []
    real = SegmentedSource.start

    def start(job: SourceJob, spill: Path, plan: SegmentPlan, sink: Any) -> SegmentedSource:
        def counting(group: ClipGroup) -> None:
            if groups is not None:
                groups.append(group.index)
            sink(group)

        source = real(job, spill, plan, counting)
        started.append(len(source.plan))
        return source

    monkeypatch.setattr(prep_mod.SegmentedSource, "start", start)
    return started


def test_two_workers_decode_one_long_file_in_segments_with_the_same_clips(
    long_wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _reference(long_wav, tmp_path / "ref", monkeypatch)
    monkeypatch.setattr(seg_mod, "SEGMENT_SECONDS", 10.0)
    monkeypatch.setattr(streamed_mod, "CLIP_GROUP_SECONDS", 10.0)
    started = _spy_segments(monkeypatch)
    out = tmp_path / "ds"
    rep = prepare([long_wav], out, Config(), slice_only=True, language="en", workers=2, progress=False)
    assert started == [len(SegmentPlan.make(75 * 44100, 44100, SR, 109368, 10.0, *WIN_HOP))]
    assert _clip_files(out) == ref and rep.n_clips == len(ref) > 8
    assert not list((out / ".work").rglob("*.f32"))


@pytest.mark.parametrize(
    ("problem", "reason"), [("peak", "exceeds prepare.max_source_peak"), ("nan", "NaN/Inf")]
)
def test_segmented_source_skipped_at_its_end_leaves_no_clips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: str, reason: str
) -> None:
    """Three workers, two sources: the long one goes in segments; its trouble is in its last second,
    after clips of its first segments were written, and those are deleted."""
    monkeypatch.setattr(seg_mod, "SEGMENT_SECONDS", 10.0)
    monkeypatch.setattr(streamed_mod, "CLIP_GROUP_SECONDS", 5.0)
    sent: list[int] = []
    started = _spy_segments(monkeypatch, sent)
    src = _late_problem_input(tmp_path / "in", problem)
    sf.write(src.parent / "fine.flac", speech_like([(2.0, 0.5)], 22050, seed=7), 22050)
    out = tmp_path / "ds"
    rep = prepare([src.parent], out, Config(), slice_only=True, language="en", workers=3, progress=False)
    assert started == [len(SegmentPlan.make(75 * 44100, 44100, SR, 109368, 10.0, *WIN_HOP))]
    assert [reason in s.reason for s in rep.skipped] == [True]
    assert len(sent) >= 3  # clips went out before the end was known
    assert rep.n_clips == 1 and {c.source for c in rep.clips} == {str(src.parent / "fine.flac")}
    assert [p.name for p in (out / "wavs").iterdir()] == [f"{rep.clips[0].id}.wav"]
    assert len(list((out / ".work" / "sources").glob("*.json"))) == 2
    assert not list((out / ".work").rglob("*.f32"))


def test_interrupted_segmented_slicing_resumes_without_duplicates(
    long_wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = _reference(long_wav, tmp_path / "ref", monkeypatch)
    monkeypatch.setattr(seg_mod, "SEGMENT_SECONDS", 10.0)
    real = SegmentedSource.cut
    calls = {"n": 0}

    def cut(self: SegmentedSource) -> object:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # Ctrl-C after some segments were cut and their clips sent
        return real(self)

    monkeypatch.setattr(SegmentedSource, "cut", cut)
    out = tmp_path / "ds"
    with pytest.raises(Interrupted):
        prepare([long_wav], out, Config(), slice_only=True, language="en", workers=2, progress=False)
    assert not list((out / ".work" / "sources").glob("*.json"))
    assert not list((out / ".work").rglob("*.f32"))
    monkeypatch.setattr(SegmentedSource, "cut", real)
    rep = prepare([long_wav], out, Config(), slice_only=True, language="en", workers=2, progress=False)
    assert _clip_files(out) == ref
    assert len({c.id for c in rep.clips}) == len(rep.clips) == len(ref)
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


# ---------------------------------------------------------------------------- supporting pieces
FAULTS_PROBE = """
import resource, sys
import numpy as np
from gptsovits_train.data.workers import keep_freed_memory

def faults_of_a_fresh_buffer():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buf = np.empty(4 << 20, dtype=np.float32)  # 16 MB, below the 32 MB mmap threshold
    buf.fill(1.0)  # touch every page
    del buf
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

if sys.argv[1] == "keep":
    assert keep_freed_memory()
print([faults_of_a_fresh_buffer() for _ in range(2)][1])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_freed_memory_is_reused_without_new_page_faults() -> None:
    """A 16 MB buffer allocated, freed and allocated again (fresh processes, so that no earlier
    allocation has moved glibc's own thresholds): by default the second one still comes as fresh
    pages from the kernel; after `keep_freed_memory` it is the freed memory again."""

    def second_faults(mode: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", FAULTS_PROBE, mode], capture_output=True, text=True, check=True
        )
        return int(done.stdout.strip())

    assert second_faults("default") > 200
    assert second_faults("keep") < 50


RELEASE_PROBE = """
import numpy as np
from gptsovits_train.data.workers import keep_freed_memory, release_free_memory

def rss_mb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) // 1024

assert keep_freed_memory()
blocks = [np.ones(1 << 18, dtype=np.float32) for _ in range(200)]  # 200 MB in 1 MB heap blocks
del blocks
kept = rss_mb()
assert release_free_memory()
print(kept - rss_mb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_released_memory_leaves_the_process() -> None:
    """Freed heap blocks stay resident (that is what `keep_freed_memory` is for) until
    `release_free_memory` hands them back."""
    done = subprocess.run([sys.executable, "-c", RELEASE_PROBE], capture_output=True, text=True, check=True)
    assert int(done.stdout.strip()) > 150


def test_clip_to_dict_is_asdict() -> None:
    clip = Clip(
        id="a",
        path="wavs/a.wav",
        source="s.wav",
        start=0.5,
        end=1.5,
        duration=1.0,
        text="hi",
        language="en",
        speaker="spk",
        phones=["h", "i"],
        phone_ids=[3, 4],
        extra={"k": [1, 2]},
    )
    assert clip.to_dict() == dataclasses.asdict(clip)
    assert Clip.from_dict(json.loads(clip.to_json())) == clip


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("workers", [1, 2])  # one stream / segments
def test_full_disk_while_writing_the_spill_is_one_line(
    long_wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """The spill file on a full device (a link to /dev/full: every write fails with ENOSPC, as the
    kernel reports a full disk): `OutputWriteError` naming it, not an "unexpected error"."""
    monkeypatch.setattr(seg_mod, "SEGMENT_SECONDS", 10.0)
    link = tmp_path / "spill.f32"
    link.symlink_to("/dev/full")  # prepare deletes the link when it gives up, never the device
    monkeypatch.setattr(DatasetLayout, "source_spill", lambda self, key: link)
    started = _spy_segments(monkeypatch)
    with pytest.raises(
        OutputWriteError, match=r"no space left on the device holding .* \(while writing spill.f32\)"
    ):
        prepare(
            [long_wav],
            tmp_path / "ds",
            Config(),
            slice_only=True,
            language="en",
            workers=workers,
            progress=False,
        )
    assert len(started) == (workers - 1)  # -j 2 went the segment way
    assert Path("/dev/full").is_char_device()
