"""`prepare` at scale: block-wise slicing of long recordings gives exactly the whole-file result.

Independent expectations: the whole-file path (`load_audio` + `resample` + `frame_rms` +
`slice_bounds`, itself checked against the official slicer fixture in test_slicer.py) and the plain
definition of frame RMS.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import gptsovits_train.data.prepare as prep_mod
from gptsovits_train.audio.io import load_audio, resample
from gptsovits_train.audio.slicer import (
    SlicerParams,
    frame_rms,
    frame_rms_range,
    slice_bounds,
    split_long,
)
from gptsovits_train.audio.stream import SpillFile, decode_to_spill, mix_to_mono
from gptsovits_train.config import Config, SlicerConfig
from gptsovits_train.data.prepare import SourceJob, analyse_streamed, prepare
from gptsovits_train.data.sources import Source
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
    for decode_block, rb in [
        (SR * 5, rms_block),
        (SR * 5 - 1, rms_block - 1),
        (4096, rms_block + 1),
        (1000, 3),
    ]:
        spill = tmp_path / f"spill_{decode_block}_{rb}.f32"
        found = analyse_streamed(job, spill, decode_block=decode_block, rms_block=rb)
        assert np.array_equal(found.rms, whole_rms)
        assert found.bounds == whole
        assert found.n_samples == len(x)


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
    monkeypatch.setattr(prep_mod, "CLIP_GROUP_SECONDS", 10.0)
    streamed: list[str] = []
    real = prep_mod.analyse_streamed
    monkeypatch.setattr(
        prep_mod,
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
    monkeypatch.setattr(prep_mod, "CLIP_GROUP_SECONDS", 10.0)
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
    monkeypatch.setattr(prep_mod, "CLIP_GROUP_SECONDS", 10.0)
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
