"""`prepare` at scale: block-wise slicing of long recordings gives exactly the whole-file result.

Independent expectations: the whole-file path (`load_audio` + `resample` + `frame_rms` +
`slice_bounds`, itself checked against the official slicer fixture in test_slicer.py) and the plain
definition of frame RMS.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import gptsovits_train.data.prepare as prep_mod
import gptsovits_train.data.streamed_source as streamed_mod
from gptsovits_train.audio.clipping import detect_clipping
from gptsovits_train.audio.io import load_audio, resample
from gptsovits_train.audio.slicer import (
    ChunkStream,
    FrameRmsStream,
    SlicerParams,
    bounds_from_rms,
    frame_rms,
    frame_rms_range,
    slice_bounds,
    split_long,
)
from gptsovits_train.audio.stream import SpillFile, decode_to_spill, mix_to_mono
from gptsovits_train.config import Config, SlicerConfig
from gptsovits_train.data.prepare import prepare
from gptsovits_train.data.source_clips import SourceJob
from gptsovits_train.data.sources import Source
from gptsovits_train.data.streamed_source import ClipGroup, analyse_streamed
from gptsovits_train.errors import Interrupted
from gptsovits_train.layout import DatasetLayout

SR = 32000


def speech_like(seconds_on_off: list[tuple[float, float]], sr: int, seed: int = 0) -> np.ndarray:
    """Noise bursts (amplitude 0.3) separated by near-silence (1e-4), as (on, off) second pairs."""
    rng = np.random.default_rng(seed)
    parts = []
    for on, off in seconds_on_off:
        parts.append((0.3 * rng.standard_normal(int(on * sr))).astype(np.float32))
        parts.append((1e-4 * rng.standard_normal(int(off * sr))).astype(np.float32))
    return np.concatenate(parts)


# ------------------------------------------------------------------------------ frame RMS by blocks
@pytest.mark.parametrize(("win", "hop"), [(1280, 320), (960, 320), (1000, 300), (2560, 640)])
@pytest.mark.parametrize("block", [1, 2, 7, 64, 1000])
def test_frame_rms_range_is_bit_identical(win: int, hop: int, block: int) -> None:
    rng = np.random.default_rng(win + block)
    x = (0.2 * rng.standard_normal(20_011)).astype(np.float32)
    x[5000:9000] = 0.0  # exact ties: equal frames must stay equal
    whole = frame_rms(x, win, hop)
    got = frame_rms_range(lambda a, b: x[a:b], len(x), win, hop, block_frames=block)
    assert np.array_equal(got, whole)
    part = frame_rms_range(lambda a, b: x[a:b], len(x), win, hop, 13, 41, block_frames=block)
    assert np.array_equal(part, whole[13:41])
    # and the plain definition (zero padding of win // 2, window mean of squares)
    padded = np.pad(x.astype(np.float64), (win // 2, win // 2))
    direct = np.array([np.sqrt(np.mean(padded[i * hop : i * hop + win] ** 2)) for i in range(len(whole))])
    np.testing.assert_allclose(got, direct, rtol=1e-9, atol=1e-12)


def test_split_long_reads_only_its_window_and_matches_the_whole_piece() -> None:
    p = SlicerParams.from_config(SlicerConfig(), SR)
    x = speech_like([(7.3, 0.02), (9.1, 0.01), (30.0, 0.0)], SR, seed=4)
    reads: list[tuple[int, int]] = []

    def reader(a: int, b: int) -> np.ndarray:
        reads.append((a, b))
        return x[a:b]

    max_samples = 20 * SR
    start, end = 1234 * p.hop, len(x) - 77
    got = split_long(reader, start, end, max_samples, p)
    assert got == split_long(x, start, end, max_samples, p)
    # reference: the quietest frame of the piece's own frame RMS, at least max/2 from either end
    rms = frame_rms(x[start:end], p.win, p.hop)
    lo, hi = -(-(max_samples // 2) // p.hop), (end - start - max_samples // 2) // p.hop
    assert got[0][1] == start + (lo + int(np.argmin(rms[lo : hi + 1]))) * p.hop
    assert max(b - a for a, b in reads) <= (1 << 11) * p.hop + p.win


# ----------------------------------------------------------------------------- streaming decoder
@pytest.mark.parametrize(
    ("rate", "channels", "fmt", "subtype"),
    [
        (44100, 2, "WAV", "PCM_16"),
        (22050, 1, "FLAC", "PCM_16"),
        (32000, 3, "WAV", "FLOAT"),
        (48000, 2, "OGG", "VORBIS"),
    ],
)
@pytest.mark.parametrize("helper_thread", [False, True])
def test_decode_to_spill_equals_load_and_resample(
    tmp_path: Path, rate: int, channels: int, fmt: str, subtype: str, helper_thread: bool
) -> None:
    rng = np.random.default_rng(rate + channels)
    n = int(3.7 * rate) + 11
    data = (0.3 * rng.standard_normal((n, channels))).astype(np.float32)
    path = tmp_path / f"in.{fmt.lower()}"
    sf.write(path, data, rate, format=fmt, subtype=subtype)
    loaded = load_audio(path)
    expected = resample(loaded.samples, loaded.sample_rate, SR)
    for block in (1000, 4096, 1 << 16):
        spill = tmp_path / f"spill_{block}.f32"
        res = decode_to_spill(path, SR, spill, block_frames=block, helper_thread=helper_thread)
        got = SpillFile(spill, res.n_samples)(0, res.n_samples)
        assert np.array_equal(got, expected), block
        assert res.peak == float(np.max(np.abs(expected)))
        assert res.input_seconds == pytest.approx(loaded.seconds)
        assert res.warnings == loaded.warnings
        assert res.clipping == detect_clipping(loaded.samples)


@pytest.mark.parametrize(("fmt", "channels"), [("WAV", 1), ("WAV", 2), ("FLAC", 1), ("FLAC", 2), ("AIFF", 2)])
def test_pcm16_fast_path_is_libsndfiles_float_read(tmp_path: Path, fmt: str, channels: int) -> None:
    """16-bit PCM is read as integers and converted here: every int16 value (both extremes
    included) must give libsndfile's float32 read, channel-mixed as `mix_to_mono` does."""
    rng = np.random.default_rng(channels)
    every = np.arange(-32768, 32768, dtype=np.int16)
    data = np.stack([rng.permutation(every) for _ in range(channels)], axis=1)
    data[:4] = [[-32768] * channels, [32767] * channels, [-1] * channels, [0] * channels]
    path = tmp_path / f"pcm16.{fmt.lower()}"
    sf.write(path, data, 44100, format=fmt, subtype="PCM_16")
    floats, _ = sf.read(path, dtype="float32", always_2d=True)
    expected = mix_to_mono(floats)
    spill = tmp_path / "s.f32"
    res = decode_to_spill(path, 44100, spill, block_frames=1000)  # same rate: the decoded samples
    assert np.array_equal(SpillFile(spill, res.n_samples)(0, res.n_samples), expected)


def test_two_channel_mix_is_numpys_float32_mean() -> None:
    rng = np.random.default_rng(7)
    d = rng.standard_normal((100_000, 2)).astype(np.float32)
    d[::5] *= np.float32(1e-38)  # subnormal range
    assert np.array_equal(mix_to_mono(d), d.mean(axis=1, dtype=np.float32))


def test_decode_to_spill_rejects_like_load_audio(tmp_path: Path) -> None:
    bad = tmp_path / "nan.wav"
    x = np.zeros((5000, 1), np.float32)
    x[100:103] = np.nan
    sf.write(bad, x, 16000, subtype="FLOAT")
    with pytest.raises(Exception, match="3 NaN/Inf samples"):
        decode_to_spill(bad, SR, tmp_path / "s.f32", block_frames=64)
    with pytest.raises(Exception, match="3 NaN/Inf samples"):
        load_audio(bad)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(Exception, match="empty file"):
        decode_to_spill(empty, SR, tmp_path / "s.f32")


# ------------------------------------------------------------------- cuts near block boundaries
def _job(path: Path, root: Path, mode: str = "slice", cfg: Config | None = None) -> SourceJob:
    cfg = cfg or Config()
    src = Source(path=path, id="long", transcript=None, speaker="spk", language="en")
    return SourceJob(src, mode, False, False, root, cfg.audio, cfg.prepare)  # type: ignore[arg-type]


def test_block_wise_cuts_equal_whole_file_cuts_near_block_edges(tmp_path: Path) -> None:
    """A 32 kHz file whose silences (and so its cuts) sit at multiples of the block sizes used."""
    p = SlicerParams.from_config(SlicerConfig(), SR)
    rms_block = 500  # frames = 5 s
    rng = np.random.default_rng(11)
    x = (0.3 * rng.standard_normal(62 * SR)).astype(np.float32)
    # 0.45 s gaps (at most max_sil_kept, so each is cut at its quietest frame) centred on every
    # RMS block edge, shifted by a few frames and samples around it
    for k, shift in zip(range(1, 12), itertools.cycle([-3, -1, 0, 1, 2, 5]), strict=False):
        centre = k * rms_block * p.hop + shift * p.hop + (k % 3) * 17
        x[centre - int(0.225 * SR) : centre + int(0.225 * SR)] = (
            1e-5 * rng.standard_normal(int(0.45 * SR))
        ).astype(np.float32)
        zeros = p.win // 2 + 2 * p.hop  # the quietest frames (exact zeros) sit at the centre
        x[centre - zeros : centre + zeros] = 0.0
    path = tmp_path / "long.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    whole_rms = frame_rms(x, p.win, p.hop)
    whole = slice_bounds(x, p, whole_rms)
    cuts = [b[0] for b in whole[1:]]
    assert len(cuts) >= 10
    assert all(abs(c / p.hop - round(c / (rms_block * p.hop)) * rms_block) <= 6 for c in cuts)
    job = _job(path, tmp_path / "ds")
    for decode_block in (SR * 5, SR * 5 - 1, 4096, 1000, 333):
        spill = tmp_path / f"spill_{decode_block}.f32"
        sent: list[ClipGroup] = []
        found = analyse_streamed(job, spill, sent.append, decode_block=decode_block)
        assert [b for g in sent for b in g.bounds] == whole
        assert found.n_groups == len(sent) and not found.discard and not found.outcome.skipped
        for g in sent:  # each group carries the whole-file frames that cover its clips
            assert np.array_equal(g.rms, whole_rms[g.rms_offset : g.rms_offset + len(g.rms)])
            assert g.bounds[-1][1] <= g.n_samples


@pytest.mark.parametrize("seed", range(4))
def test_streamed_rms_and_chunks_equal_the_whole_signal(seed: int) -> None:
    """`FrameRmsStream` + `ChunkStream` over random pieces (1 sample to 3 s) give exactly
    `frame_rms` and `bounds_from_rms` of the whole signal, and each chunk only after its samples."""
    p = SlicerParams.from_ms(SR, -34, 1500, 300, 10, 500)
    rng = np.random.default_rng(seed)
    pattern = [(float(rng.uniform(0.05, 3.0)), float(rng.uniform(0.0, 1.5))) for _ in range(25)]
    x = speech_like(pattern, SR, seed=seed)
    whole_rms = frame_rms(x, p.win, p.hop)
    rms_stream, chunks = FrameRmsStream(p.win, p.hop), ChunkStream(p)
    got_rms, got = [], []
    pos = 0
    while pos < len(x):
        n = int(rng.choice([1, 2, 319, 320, 321, 4096, int(rng.integers(1, 3 * SR))]))
        frames = rms_stream.feed(x[pos : pos + n])
        pos += n
        got_rms.append(frames)
        for start, end in chunks.feed(frames):
            assert end <= pos  # a chunk is only handed out once its samples have arrived
            got.append((start, end))
    last = rms_stream.finish()
    got_rms.append(last)
    got += chunks.feed(last) + chunks.finish(len(x))
    assert np.array_equal(np.concatenate(got_rms), whole_rms)
    assert got == bounds_from_rms(whole_rms, len(x), p)
    assert len(got) > 5


# --------------------------------------------------------------------------------- whole prepare
def _long_input(folder: Path) -> Path:
    """A 75 s 44.1 kHz stereo recording (over the 60 s streaming threshold) plus one short file."""
    folder.mkdir()
    rng = np.random.default_rng(5)
    pattern = [(float(rng.uniform(1.0, 9.0)), float(rng.uniform(0.35, 1.2))) for _ in range(14)]
    mono = speech_like(pattern, 44100, seed=6)[: 75 * 44100]
    stereo = np.stack([mono, 0.8 * mono], axis=1)
    sf.write(folder / "long.wav", stereo, 44100, subtype="PCM_16")
    sf.write(folder / "short.flac", speech_like([(2.0, 0.5)], 22050, seed=7), 22050)
    return folder


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _clip_files(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in _files(root).items() if k.startswith("wavs/")}


@pytest.fixture(scope="module")
def long_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _long_input(tmp_path_factory.mktemp("scale") / "in")


@pytest.fixture(scope="module")
def in_memory_result(long_input: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Reference: the whole-file path for every source."""
    out = tmp_path_factory.mktemp("ref") / "ds"
    mp = pytest.MonkeyPatch()
    mp.setattr(prep_mod, "_needs_stream", lambda job: False)
    try:
        prepare([long_input], out, Config(), slice_only=True, language="en", workers=1, progress=False)
    finally:
        mp.undo()
    return out


def test_streamed_prepare_equals_in_memory(
    long_input: Path, in_memory_result: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streamed_mod, "CLIP_GROUP_SECONDS", 10.0)
    streamed: list[str] = []
    real = streamed_mod.analyse_streamed
    monkeypatch.setattr(
        streamed_mod,
        "analyse_streamed",
        lambda job, *a, **k: streamed.append(job.source.id) or real(job, *a, **k),
    )
    out = tmp_path / "ds"
    rep = prepare([long_input], out, Config(), slice_only=True, language="en", workers=1, progress=False)
    assert streamed == ["long"]  # only the long file is streamed
    assert rep.n_clips > 8
    assert _clip_files(out) == _clip_files(in_memory_result)
    assert (out / "transcripts_template.list").read_bytes() == (
        in_memory_result / "transcripts_template.list"
    ).read_bytes()
    assert not list((out / ".work").rglob("*.f32"))  # spill files are deleted


def test_two_workers_on_one_long_file_give_the_same_clips(
    long_input: Path, in_memory_result: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streamed_mod, "CLIP_GROUP_SECONDS", 10.0)
    out = tmp_path / "ds"
    rep = prepare(
        [long_input / "long.wav"], out, Config(), slice_only=True, language="en", workers=2, progress=False
    )
    ref = {k: v for k, v in _clip_files(in_memory_result).items() if "/long_" in k}
    assert _clip_files(out) == ref
    assert rep.n_clips == len(ref)


def test_interrupted_block_wise_slicing_resumes_without_duplicates(
    long_input: Path, in_memory_result: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streamed_mod, "CLIP_GROUP_SECONDS", 10.0)
    real = prep_mod.write_clip_group
    calls = {"n": 0}

    def crashing(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C while the 3rd group of clips is written
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(prep_mod, "write_clip_group", crashing)
    out = tmp_path / "ds"
    with pytest.raises(Interrupted) as info:
        prepare(
            [long_input / "long.wav"],
            out,
            Config(),
            slice_only=True,
            language="en",
            workers=1,
            progress=False,
        )
    assert info.value.exit_code == 130 and "0 of 1 source files done" in str(info.value)
    layout = DatasetLayout(out)
    partial = _clip_files(out)
    assert partial  # the first groups were written ...
    assert not list((layout.work_dir / "sources").glob("*.json"))  # ... but the source is not done
    assert not list(layout.work_dir.rglob("*.f32"))
    monkeypatch.setattr(prep_mod, "write_clip_group", real)
    rep = prepare(
        [long_input / "long.wav"], out, Config(), slice_only=True, language="en", workers=1, progress=False
    )
    ref = {k: v for k, v in _clip_files(in_memory_result).items() if "/long_" in k}
    assert _clip_files(out) == ref  # same clips, none twice, nothing left over
    assert sorted(c.id for c in rep.clips) == sorted(Path(k).stem for k in ref)
    assert len({c.id for c in rep.clips}) == len(rep.clips)
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


# ------------------------------------------------------------- sources skipped after clips were sent
def _late_problem_input(folder: Path, problem: str) -> Path:
    """A 75 s float WAV whose trouble (a peak of 3.0, or NaN samples) sits in its last second, after
    many clips have been found and sent."""
    folder.mkdir()
    rng = np.random.default_rng(8)
    pattern = [(float(rng.uniform(1.0, 6.0)), float(rng.uniform(0.35, 1.0))) for _ in range(20)]
    x = speech_like(pattern, 44100, seed=9)[: 75 * 44100]
    if problem == "peak":
        x[-44100:-44000] = 3.0
    elif problem == "clipped":  # flat tops at 0.5 all through: skipped, but known only at the end
        x = np.clip(4 * x, -0.5, 0.5)
    else:
        x[-1000:-990] = np.nan
    sf.write(folder / "late.wav", x, 44100, subtype="FLOAT")
    return folder / "late.wav"


@pytest.mark.parametrize("workers", [1, 2, 3])  # 3 > 2 sources: the analysis runs three threads
@pytest.mark.parametrize(
    ("problem", "reason"), [("peak", "exceeds prepare.max_source_peak"), ("nan", "NaN/Inf")]
)
def test_source_skipped_at_its_end_leaves_no_clips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int, problem: str, reason: str
) -> None:
    monkeypatch.setattr(streamed_mod, "CLIP_GROUP_SECONDS", 5.0)
    src = _late_problem_input(tmp_path / "in", problem)
    sent: list[ClipGroup] = []
    found = analyse_streamed(_job(src, tmp_path / "probe"), tmp_path / "probe.f32", sent.append)
    assert len(sent) >= 3 and found.discard and found.n_groups == len(sent)  # clips went out first
    sf.write(src.parent / "fine.flac", speech_like([(2.0, 0.5)], 22050, seed=7), 22050)
    out = tmp_path / "ds"
    rep = prepare(
        [src.parent], out, Config(), slice_only=True, language="en", workers=workers, progress=False
    )
    assert [reason in s.reason for s in rep.skipped] == [True]
    assert rep.n_clips == 1 and {c.source for c in rep.clips} == {str(src.parent / "fine.flac")}
    assert [p.name for p in (out / "wavs").iterdir()] == [f"{rep.clips[0].id}.wav"]  # the sent clips are gone
    assert len(list((out / ".work" / "sources").glob("*.json"))) == 2  # both sources are done
    assert not list((out / ".work").rglob("*.f32"))


def test_two_workers_write_clips_while_the_file_is_still_being_decoded(
    long_input: Path, in_memory_result: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With -j 2 and one stream (no segments: a file `audio.segments` cannot split), clips are written
    by the other worker while the analysis task is still decoding: after sending its first group, the
    analysis waits (up to 60 s) for a clip file to appear. Pool workers are forked after the patch,
    so they run the patched analysis."""
    monkeypatch.setattr(streamed_mod, "CLIP_GROUP_SECONDS", 10.0)
    monkeypatch.setattr(prep_mod, "segment_plan", lambda job, workers: None)
    real_analyse = streamed_mod.analyse_streamed
    out = tmp_path / "ds"

    def analysing(job, spill, sink, helper_thread=False, **kw):  # type: ignore[no-untyped-def]
        def sink_and_wait(group: ClipGroup) -> None:
            sink(group)
            if group.index == 0:
                deadline = time.monotonic() + 60
                while not list((out / "wavs").glob("long_*.wav")) and time.monotonic() < deadline:
                    time.sleep(0.01)
                seen = "written" if list((out / "wavs").glob("long_*.wav")) else "timed out"
                (tmp_path / "wait.txt").write_text(seen)

        return real_analyse(job, spill, sink_and_wait, helper_thread, **kw)

    monkeypatch.setattr(streamed_mod, "analyse_streamed", analysing)
    prepare(
        [long_input / "long.wav"], out, Config(), slice_only=True, language="en", workers=2, progress=False
    )
    assert (tmp_path / "wait.txt").read_text() == "written"
    ref = {k: v for k, v in _clip_files(in_memory_result).items() if "/long_" in k}
    assert _clip_files(out) == ref


def test_two_long_files_with_two_workers(long_input: Path, in_memory_result: Path, tmp_path: Path) -> None:
    """Each worker analyses one long file; the groups of both are written by whoever is free."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "long.wav").write_bytes((long_input / "long.wav").read_bytes())
    (folder / "long2.wav").write_bytes((long_input / "long.wav").read_bytes())
    out = tmp_path / "ds"
    rep = prepare([folder], out, Config(), slice_only=True, language="en", workers=2, progress=False)
    ref = {k: v for k, v in _clip_files(in_memory_result).items() if "/long_" in k}
    got = _clip_files(out)
    assert {k: v for k, v in got.items() if "/long_" in k} == ref
    assert sorted(v for k, v in got.items() if "/long2_" in k) == sorted(ref.values())
    assert rep.n_clips == 2 * len(ref)


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_streamed_source_gets_the_clipping_warning_of_the_in_memory_path(
    tmp_path: Path, subtype: str
) -> None:
    """A long recording with some flat tops: the same warning (same share and level) either way."""
    rng = np.random.default_rng(12)
    pattern = [(float(rng.uniform(1.0, 6.0)), float(rng.uniform(0.35, 1.0))) for _ in range(20)]
    x = speech_like(pattern, 44100, seed=13)[: 70 * 44100]
    x *= np.float32(0.8 / np.abs(x).max())  # the flat tops below are the file's peak
    x[44100 * 20 : 44100 * 23] = np.clip(10 * x[44100 * 20 : 44100 * 23], -0.9, 0.9)
    path = tmp_path / "some_clipping.wav"
    sf.write(path, x, 44100, subtype=subtype)
    job = _job(path, tmp_path / "ds")
    streamed = analyse_streamed(job, tmp_path / "s.f32", lambda group: None)
    whole = prep_mod.process_source(job)
    assert [w.message for w in streamed.outcome.warnings] == [w.message for w in whole.warnings]
    assert any("clipped" in w.message for w in whole.warnings)


def test_a_failing_consumer_stops_the_decode_threads_and_restores_the_gil_interval(tmp_path: Path) -> None:
    import sys
    import threading

    path = tmp_path / "in.wav"
    sf.write(path, (0.3 * np.random.default_rng(3).standard_normal(44100 * 5)).astype(np.float32), 44100)
    before = sys.getswitchinterval()

    def failing(samples: np.ndarray, writer: object) -> None:
        raise RuntimeError("consumer failed")

    with pytest.raises(RuntimeError, match="consumer failed"):
        decode_to_spill(
            path, SR, tmp_path / "s.f32", block_frames=4096, helper_thread=True, on_output=failing
        )
    assert sys.getswitchinterval() == before
    assert not [t for t in threading.enumerate() if t.name == "audio-pipeline"]
    (tmp_path / "dir.f32").mkdir()  # the spill cannot be opened
    with pytest.raises(IsADirectoryError):
        decode_to_spill(path, SR, tmp_path / "dir.f32", helper_thread=True)
    assert sys.getswitchinterval() == before
