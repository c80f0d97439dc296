"""prepare() modes: transcribed sources are trimmed not split, --slice-only, loudness formulas, the
post-audio stage hook, parallel workers, and the "no transcript at all" stop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from gptsovits_train.audio.loudness import apply_slice_mix, apply_wav32k_mix, peak_mix, repair_peak
from gptsovits_train.config import Config
from gptsovits_train.data.manifest import Clip, read_manifest
from gptsovits_train.data.prepare import prepare
from gptsovits_train.data.report_types import Skipped
from gptsovits_train.data.stages import StageResult
from gptsovits_train.errors import GsvError
from gptsovits_train.layout import DatasetLayout

SR = 32000


def lj32k(sample_dir: Path, name: str) -> np.ndarray:
    x, sr = sf.read(sample_dir / "wavs" / f"{name}.flac", dtype="float32")
    return soxr.resample(x, sr, SR).astype(np.float32)


def long_recording(sample_dir: Path, names: list[str], gap_s: float = 1.0) -> np.ndarray:
    gap = np.zeros(int(gap_s * SR), np.float32)
    parts = []
    for n in names:
        parts += [lj32k(sample_dir, n), gap]
    return np.concatenate(parts)


ALL12 = [
    "LJ001-0002",
    "LJ001-0004",
    "LJ001-0006",
    "LJ001-0008",
    "LJ001-0011",
    "LJ001-0013",
    "LJ001-0016",
    "LJ001-0019",
    "LJ001-0020",
    "LJ001-0026",
    "LJ001-0028",
    "LJ001-0029",
]


def test_loudness_formulas():
    rng = np.random.default_rng(0)
    x = (0.2 * rng.standard_normal(1000)).astype(np.float32)
    assert np.abs(x).max() < 1.0
    p = np.abs(x).max()
    np.testing.assert_allclose(peak_mix(x, 0.95, 0.5), x / p * 0.475 + 0.5 * x, rtol=1e-6)
    np.testing.assert_allclose(apply_slice_mix(x), x / p * 0.225 + 0.75 * x, rtol=1e-6)
    y, before = repair_peak(2 * x / p)
    assert before == pytest.approx(2.0) and np.abs(y).max() == pytest.approx(1.0)
    assert np.abs(apply_wav32k_mix(y)).max() == pytest.approx(0.975)
    assert peak_mix(np.zeros(10, np.float32), 0.95, 0.5).tolist() == [0.0] * 10


def test_transcribed_source_is_trimmed_with_training_loudness(tmp_path, sample_dir):
    """A 32 kHz source with 1 s silence on both sides: trimmed (0.5 s kept), not split, and the wav is the
    official training copy trunc(x/peak*(0.95*0.5*32768) + 0.5*32768*x) of the source (+-1 LSB of float
    rounding)."""
    speech = lj32k(sample_dir, "LJ001-0004")
    x = np.concatenate([np.zeros(SR, np.float32), speech, np.zeros(SR, np.float32)])
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "a.wav", x, SR, subtype="FLOAT")
    (tmp_path / "in" / "a.txt").write_text("produced the block books", encoding="utf-8")
    rep = prepare([tmp_path / "in"], tmp_path / "ds", Config(), workers=1, progress=False)
    (clip,) = rep.clips
    assert clip.id == "a" and clip.text == "produced the block books" and clip.language == "en"
    assert 0.4 < clip.start < 1.0 and len(x) / SR - 1.0 < clip.end < len(x) / SR - 0.4
    start, end = round(clip.start * SR), round(clip.end * SR)
    seg = x[start:end]
    seg = seg.astype(np.float64)
    expected = np.trunc(seg / np.abs(seg).max() * (0.95 * 0.5 * 32768) + 0.5 * 32768 * seg)
    got, sr = sf.read(tmp_path / "ds" / clip.path, dtype="int16")
    assert sr == SR and got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1


def test_transcribed_source_longer_than_max_is_skipped(tmp_path, sample_dir):
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "long.wav", long_recording(sample_dir, ALL12[:6], 0.2), SR)
    (tmp_path / "in" / "long.txt").write_text("many sentences", encoding="utf-8")
    sf.write(tmp_path / "in" / "ok.wav", lj32k(sample_dir, "LJ001-0002"), SR)
    (tmp_path / "in" / "ok.txt").write_text("in being comparatively modern.", encoding="utf-8")
    rep = prepare([tmp_path / "in"], tmp_path / "ds", Config(), workers=1, progress=False)
    assert [c.id for c in rep.clips] == ["ok"]
    (skip,) = rep.skipped
    assert (
        skip.source.endswith("long.wav")
        and "longer than prepare.slicer.max_clip_seconds (20 s)" in skip.reason
    )


def test_slice_only_writes_clips_and_template(tmp_path, sample_dir):
    rec = long_recording(sample_dir, ALL12, 1.0)  # ~62 s with 1 s gaps
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "talk.flac", rec, SR)
    rec = sf.read(tmp_path / "in" / "talk.flac", dtype="float32")[0]  # what the file holds (16-bit)
    rep = prepare(
        [tmp_path / "in"],
        tmp_path / "sl",
        Config(),
        slice_only=True,
        workers=1,
        progress=False,
        speaker="me",
        language="en",
    )
    layout = DatasetLayout(tmp_path / "sl")
    assert rep.slice_only and not layout.manifest.exists() and not layout.spec_dir.exists()
    assert 4 <= rep.n_clips <= 12
    for c in rep.clips:
        assert c.id == f"talk_{round(c.start * SR):010d}_{round(c.end * SR):010d}"  # official naming
        assert c.duration <= 20.0 and c.text == ""
        # slice-only clips carry only the slicer's loudness mix: their audio is that mix of the source
        seg = rec[round(c.start * SR) : round(c.end * SR)]
        seg = seg.astype(np.float64)
        expected = np.trunc(seg / np.abs(seg).max() * (0.9 * 0.25) * 32767 + 0.75 * seg * 32767)
        assert np.abs(sf.read(layout.root / c.path, dtype="int16")[0] - expected).max() <= 1
    lines = layout.list_template.read_text(encoding="utf-8").splitlines()
    assert lines == [f"wavs/{c.id}.wav|me|EN|" for c in rep.clips]
    # fill the template and pass it back: a dataset whose clips are the slices
    filled = layout.root / "filled.list"
    filled.write_text("".join(f"{ln}words {i}\n" for i, ln in enumerate(lines)), encoding="utf-8")
    rep2 = prepare([], tmp_path / "ds", Config(), transcripts=[filled], workers=1, progress=False)
    assert sorted(c.id for c in rep2.clips) == sorted(c.id for c in rep.clips)
    assert all(c.speaker == "me" and c.language == "en" and c.text.startswith("words") for c in rep2.clips)


def test_slice_only_splits_chunks_longer_than_max(tmp_path, sample_dir):
    rec = long_recording(sample_dir, ALL12[:6], 0.15)  # pauses too short for the slicer
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "talk.wav", rec, SR)
    cfg = Config()
    cfg.prepare.slicer.max_clip_seconds = 8.0
    rep = prepare([tmp_path / "in"], tmp_path / "sl", cfg, slice_only=True, workers=1, progress=False)
    assert rep.n_clips >= 3
    assert all(c.duration <= 8.0 for c in rep.clips)


def test_no_transcript_anywhere_stops_before_work(tmp_path, sample_dir):
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "a.wav", lj32k(sample_dir, "LJ001-0002"), SR)
    with pytest.raises(GsvError) as err:
        prepare([tmp_path / "in"], tmp_path / "ds", Config(), workers=1, progress=False)
    msg = str(err.value)
    for way_out in ("--transcripts", ".txt", "--slice-only", "--asr"):
        assert way_out in msg
    assert not (tmp_path / "ds" / "wavs").exists()


def test_post_audio_stage_hook(tmp_path, sample_dir):
    """A stage sees all clips, can fill fields and drop clips; its skips land in the report."""
    seen: list[int] = []

    def text_stage(layout: DatasetLayout, clips: list[Clip], cfg: Config) -> StageResult:
        seen.append(len(clips))
        assert all((layout.root / c.spec).is_file() for c in clips if c.spec)
        kept, skipped = [], []
        for c in clips:
            if c.id == "LJ001-0008":
                skipped.append(Skipped(c.id, "too few phones"))
                continue
            c.norm_text = c.text.lower()
            kept.append(c)
        return StageResult(kept, skipped)

    rep = prepare(
        [],
        tmp_path / "ds",
        Config(),
        transcripts=[sample_dir / "metadata.csv"],
        workers=1,
        progress=False,
        stages=[text_stage],
    )
    assert seen == [12]
    assert rep.stages == ["audio", "text_stage"]
    assert [(s.source, s.reason, s.stage) for s in rep.skipped] == [
        ("LJ001-0008", "too few phones", "text_stage")
    ]
    clips = read_manifest(tmp_path / "ds" / "manifest.jsonl")
    assert len(clips) == 11 and all(c.norm_text == c.text.lower() for c in clips)


def test_two_workers_give_the_same_dataset(tmp_path, sample_dir):
    meta = sample_dir / "metadata.csv"
    one = prepare([], tmp_path / "w1", Config(), transcripts=[meta], workers=1, progress=False)
    two = prepare([], tmp_path / "w2", Config(), transcripts=[meta], workers=2, progress=False)
    assert [(c.id, c.split, c.n_samples) for c in one.clips] == [
        (c.id, c.split, c.n_samples) for c in two.clips
    ]
    for c in one.clips:
        assert (tmp_path / "w1" / c.path).read_bytes() == (tmp_path / "w2" / c.path).read_bytes()
        assert (tmp_path / "w1" / c.spec).read_bytes() == (tmp_path / "w2" / c.spec).read_bytes()


def test_refuses_foreign_non_empty_out_dir(tmp_path, sample_dir):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "precious.txt").write_text("user data", encoding="utf-8")
    with pytest.raises(GsvError, match="not a gsv-train dataset"):
        prepare([], tmp_path / "ds", Config(), transcripts=[sample_dir / "metadata.csv"], progress=False)
    with pytest.raises(GsvError, match="inside the input folder"):
        prepare([tmp_path], tmp_path / "out", Config(), progress=False)


def test_sources_inside_the_output_folder_are_refused(tmp_path, sample_dir):
    """Passing a --slice-only template back into the same folder would overwrite its own sources."""
    rec = long_recording(sample_dir, ALL12[:4], 1.0)
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "talk.wav", rec, SR)
    prepare([tmp_path / "in"], tmp_path / "sl", Config(), slice_only=True, workers=1, progress=False)
    template = tmp_path / "sl" / "transcripts_template.list"
    template.write_text(
        "".join(ln + "words\n" for ln in template.read_text(encoding="utf-8").splitlines()), encoding="utf-8"
    )
    before = sorted(p.name for p in (tmp_path / "sl" / "wavs").iterdir())
    with pytest.raises(GsvError, match="inside the output folder"):
        prepare([], tmp_path / "sl", Config(), transcripts=[template], workers=1, progress=False, force=True)
    assert sorted(p.name for p in (tmp_path / "sl" / "wavs").iterdir()) == before  # nothing deleted


def test_slice_only_needs_a_concrete_language(tmp_path, sample_dir):
    cfg = Config()
    cfg.prepare.text.language = "auto"
    with pytest.raises(GsvError, match="needs --language"):
        prepare([sample_dir / "wavs"], tmp_path / "sl", cfg, slice_only=True, progress=False)
