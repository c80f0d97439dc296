"""Silence slicer: official chunk boundaries, and our own rules (max length, trim, short input)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gptsovits_train.audio.slicer import (
    SlicerParams,
    frame_rms,
    is_silent,
    silence_tags,
    slice_bounds,
    span_is_silent,
    split_long,
    trim_edges,
)
from gptsovits_train.config import SlicerConfig

SR = 32000


@pytest.fixture(scope="module")
def fixture_audio(reference_dir: Path) -> tuple[np.ndarray, dict]:
    data = np.load(reference_dir / "slicer_fixture.npz")
    meta = json.loads((reference_dir / "fixtures_meta.json").read_text())["slicer_fixture.npz"]
    return data["pcm_int16"].astype(np.float32) / 32768.0, meta


@pytest.mark.parametrize(
    ("params_key", "chunks_key"),
    [
        ("webui_defaults", "chunks_webui_defaults[start_sample,end_sample,len]"),
        ("class_defaults", "chunks_class_defaults[start_sample,end_sample,len]"),
    ],
)
def test_official_chunk_boundaries(fixture_audio, params_key, chunks_key):
    audio, meta = fixture_audio
    c = meta[params_key]
    p = SlicerParams.from_ms(
        SR, c["threshold"], c["min_length"], c["min_interval"], c["hop_size"], c["max_sil_kept"]
    )
    expected = [(s, e) for s, e, _ in meta[chunks_key]]
    assert slice_bounds(audio, p) == expected


def test_internal_units_match_official(fixture_audio):
    _, meta = fixture_audio
    units = meta["internal_units_webui_defaults"]
    p = SlicerParams.from_config(SlicerConfig(), SR)  # our config defaults are the web-UI defaults
    assert p.threshold == pytest.approx(units["threshold_linear"], rel=1e-12)
    assert (p.hop, p.win, p.min_length, p.min_interval, p.max_sil_kept) == (
        units["hop_size_samples"],
        units["win_size_samples"],
        units["min_length_frames"],
        units["min_interval_frames"],
        units["max_sil_kept_frames"],
    )


def test_frame_rms_matches_direct_definition():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5003).astype(np.float32)
    for win, hop in [(1280, 320), (960, 320), (1000, 300)]:  # multiple of hop, and not
        rms = frame_rms(x, win, hop)
        padded = np.pad(x.astype(np.float64), (win // 2, win // 2))
        n = 1 + (padded.shape[0] - win) // hop
        direct = np.array([np.sqrt(np.mean(padded[i * hop : i * hop + win] ** 2)) for i in range(n)])
        np.testing.assert_allclose(rms, direct, rtol=1e-10, atol=1e-12)


def _reference_tags(rms: np.ndarray, p: SlicerParams) -> list[tuple[int, int]]:
    """Frame-by-frame scan written straight from the rules in gptsovits-facts §2 (independent of the
    run-based loop of `silence_tags`)."""
    tags = []
    silence_start = None
    clip_start = 0
    keep = p.max_sil_kept
    for i, value in enumerate(rms):
        if value < p.threshold:
            if silence_start is None:
                silence_start = i
            continue
        if silence_start is None:
            continue
        s = silence_start
        silence_start = None
        if not ((s == 0 and i > keep) or (i - s >= p.min_interval and i - clip_start >= p.min_length)):
            continue
        window = lambda a, b: a + int(np.argmin(rms[a:b]))  # noqa: E731
        if i - s <= keep:
            pos = window(s, i + 1)
            tags.append((0, pos) if s == 0 else (pos, pos))
            clip_start = pos
        elif i - s <= 2 * keep:
            pos = window(i - keep, s + keep + 1)
            pos_l, pos_r = window(s, s + keep + 1), window(i - keep, i + 1)
            if s == 0:
                tags.append((0, pos_r))
                clip_start = pos_r
            else:
                tags.append((min(pos_l, pos), max(pos_r, pos)))
                clip_start = max(pos_r, pos)
        else:
            pos_l, pos_r = window(s, s + keep + 1), window(i - keep, i + 1)
            tags.append((0, pos_r) if s == 0 else (pos_l, pos_r))
            clip_start = pos_r
    total = len(rms)
    if silence_start is not None and total - silence_start >= p.min_interval:
        end = min(total, silence_start + keep)
        tags.append((silence_start + int(np.argmin(rms[silence_start : end + 1])), total + 1))
    return tags


@pytest.mark.parametrize("seed", range(6))
def test_run_based_scan_equals_frame_scan(seed):
    """Random speech-like on/off patterns, short settings so that every branch is hit."""
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(30):
        n = int(rng.uniform(0.05, 2.5) * SR)
        amp = rng.choice([0.0005, 0.3])
        parts.append((amp * rng.standard_normal(n)).astype(np.float32))
    x = np.concatenate(parts)
    for args in [(-34, 4000, 300, 10, 500), (-40, 1500, 300, 20, 300), (-30, 800, 100, 10, 150)]:
        p = SlicerParams.from_ms(SR, *args)
        rms = frame_rms(x, p.win, p.hop)
        assert silence_tags(rms, p) == _reference_tags(rms, p)


def test_lj_speech_joined_with_silence_is_cut_in_the_gaps(lj_mini_dir):
    """Real speech: LJSpeech clips joined by 1.2 s gaps; with min_interval 1 s (longer than the pauses
    inside the clips) and min_length 1 s, the slicer returns exactly the clips, each cut inside a gap."""
    clips = []
    for name in ("LJ001-0001", "LJ001-0003", "LJ001-0005"):
        x, sr = sf.read(lj_mini_dir / "wavs" / f"{name}.flac", dtype="float32")
        import soxr

        clips.append(soxr.resample(x, sr, SR).astype(np.float32))
    gap = np.zeros(int(1.2 * SR), dtype=np.float32)
    x = np.concatenate([clips[0], gap, clips[1], gap, clips[2]])
    bounds = slice_bounds(x, SlicerParams.from_ms(SR, -34, 1000, 1000, 10, 500))
    assert len(bounds) == 3
    edges = np.cumsum([0, len(clips[0]), len(gap), len(clips[1]), len(gap), len(clips[2])])
    for k in range(2):
        gap_start, gap_end = edges[2 * k + 1], edges[2 * k + 2]
        cuts = [(a[1], b[0]) for a, b in itertools.pairwise(bounds)]
        assert any(gap_start <= end <= gap_end and gap_start <= start <= gap_end for end, start in cuts)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(x)
    for (s, e), clip in zip(bounds, clips, strict=True):
        assert len(clip) <= e - s <= len(clip) + len(gap)


def test_short_input_official_quirk_returns_whole_chunk():
    """Official: a bare waveform for len(samples) <= min_length (in frames!); here: one whole chunk."""
    p = SlicerParams.from_config(SlicerConfig(), SR)  # min_length = 400 frames
    x = np.full(p.min_length, 0.3, dtype=np.float32)  # 400 samples
    assert slice_bounds(x, p) == [(0, p.min_length)]
    assert slice_bounds(np.zeros(0, dtype=np.float32), p) == []
    # just above the shortcut the normal scan runs, and the end is clamped to the audio length
    y = np.full(p.min_length + 1, 0.3, dtype=np.float32)
    assert slice_bounds(y, p) == [(0, p.min_length + 1)]


def test_split_long_cuts_at_the_quietest_frame():
    p = SlicerParams.from_config(SlicerConfig(), SR)
    rng = np.random.default_rng(1)
    x = (0.3 * rng.standard_normal(30 * SR)).astype(np.float32)
    dip = 13 * SR
    x[dip - 2000 : dip + 2000] *= 0.01  # one quiet spot at 13 s, no silence the slicer would use
    pieces = split_long(x, 0, len(x), 20 * SR, p)
    assert len(pieces) == 2
    assert pieces[0][0] == 0 and pieces[-1][1] == len(x) and pieces[0][1] == pieces[1][0]
    assert abs(pieces[0][1] - dip) <= 2000  # a frame inside the quiet spot


@pytest.mark.parametrize(("seconds", "max_s"), [(45.0, 20.0), (61.0, 20.0), (20.0, 20.0), (100.0, 7.0)])
def test_split_long_invariants(seconds, max_s):
    p = SlicerParams.from_config(SlicerConfig(), SR)
    rng = np.random.default_rng(2)
    x = (0.3 * rng.standard_normal(int(seconds * SR))).astype(np.float32)
    pieces = split_long(x, 0, len(x), int(max_s * SR), p)
    assert pieces[0][0] == 0 and pieces[-1][1] == len(x)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))  # contiguous
    assert all(e - s <= max_s * SR for s, e in pieces)
    assert len(pieces) >= int(np.ceil(seconds / max_s))
    if seconds <= 2 * max_s:  # one cut is enough when both halves can be <= max
        assert len(pieces) == int(np.ceil(seconds / max_s))


def test_trim_edges_keeps_up_to_max_sil_kept():
    p = SlicerParams.from_config(SlicerConfig(), SR)  # keep 50 frames = 0.5 s
    rng = np.random.default_rng(3)
    speech = (0.3 * rng.standard_normal(3 * SR)).astype(np.float32)
    x = np.concatenate([np.zeros(2 * SR, np.float32), speech, np.zeros(2 * SR, np.float32)])
    start, end = trim_edges(x, p)
    # frames are centred every hop over a window of win samples, so edges move by up to win/2
    assert 2 * SR - int(0.5 * SR) - p.win // 2 <= start < 2 * SR
    assert 5 * SR < end <= 5 * SR + int(0.5 * SR) + p.win // 2
    # short edge silences (< max_sil_kept / min_interval) are kept whole
    y = np.concatenate([np.zeros(int(0.2 * SR), np.float32), speech, np.zeros(int(0.05 * SR), np.float32)])
    assert trim_edges(y, p) == (0, len(y))
    assert trim_edges(np.zeros(SR, np.float32), p) is None
    assert is_silent(np.full(SR, 1e-4, np.float32), p)
    assert not is_silent(speech, p)


def test_span_is_silent_uses_frames_centred_in_the_span():
    p = SlicerParams.from_config(SlicerConfig(), SR)
    x = np.zeros(3 * SR, np.float32)
    x[SR : 2 * SR] = 0.3
    rms = frame_rms(x, p.win, p.hop)
    assert span_is_silent(rms, 0, SR // 2, p)
    assert not span_is_silent(rms, SR // 2, SR + SR // 2, p)
    assert span_is_silent(rms, 2 * SR + p.win, 3 * SR, p)
    assert span_is_silent(rms, 100, 100, p)  # empty span
