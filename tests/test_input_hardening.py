"""Hardening of `prepare`'s input handling (issue 12, items 1-5): one bad transcript line, compressed
formats through PyAV, clipping, tiny validation splits, and the --slice-only summary."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from gptsovits_train.audio.clipping import detect_clipping
from gptsovits_train.audio.io import AudioLoadError, load_audio
from gptsovits_train.cli import app
from gptsovits_train.config import Config
from gptsovits_train.data.prepare import prepare
from gptsovits_train.data.sources import discover_audio
from gptsovits_train.data.transcripts import read_transcript_file
from gptsovits_train.errors import GsvError

runner = CliRunner()
LJ = ("LJ001-0002", "LJ001-0008", "LJ001-0013")


def copy_lj(sample_dir: Path, dest: Path, names: tuple[str, ...] = LJ) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(sample_dir / "wavs" / f"{name}.flac", dest / f"{name}.flac")
    return dest


# ------------------------------------------------------------------------------ 1. one non-UTF-8 line
def test_one_latin1_line_is_skipped_and_the_other_lines_are_used(tmp_path):
    meta = tmp_path / "metadata.csv"
    raw = b"a|first line\n" + "b|caf\u00e9 au lait\n".encode("latin-1") + b"c|third line\n"
    meta.write_bytes(raw)
    ts = read_transcript_file(meta)
    assert [(e.key, e.text) for e in ts.entries] == [("a", "first line"), ("c", "third line")]
    assert len(ts.problems) == 1
    problem = ts.problems[0]
    assert problem.source == f"{meta}:2"
    offset = raw.index(bytes([0xE9]))  # 13 bytes of line 1, then "b|caf"
    assert offset == 18 and f"byte 0xe9 at offset {offset}" in problem.reason
    assert "not UTF-8" in problem.reason and "line skipped" in problem.reason


def test_a_bad_line_costs_one_clip_not_the_dataset(tmp_path, sample_dir):
    audio = copy_lj(sample_dir, tmp_path / "in")
    meta = tmp_path / "metadata.csv"
    meta.write_bytes(
        b"LJ001-0002|in being comparatively modern.\n"
        + "LJ001-0008|has never been surpass\u00e9d.\n".encode("latin-1")
        + b"LJ001-0013|the invention of movable metal letters.\n"
    )
    report = prepare(
        [audio], tmp_path / "ds", Config(), transcripts=[meta], language="en", workers=1, progress=False
    )
    assert sorted(c.id for c in report.clips) == ["LJ001-0002", "LJ001-0013"]
    line = [s for s in report.skipped if s.source == f"{meta}:2"]
    assert len(line) == 1 and "not UTF-8" in line[0].reason
    assert any(s.source.endswith("LJ001-0008.flac") and s.reason == "no transcript" for s in report.skipped)


def test_no_transcript_error_names_the_per_file_reasons(tmp_path, sample_dir):
    audio = copy_lj(sample_dir, tmp_path / "in")
    meta = tmp_path / "metadata.csv"
    meta.write_bytes("LJ001-0002|in being comparatively modern.\n".encode("utf-16"))
    with pytest.raises(GsvError) as err:
        prepare(
            [audio], tmp_path / "ds", Config(), transcripts=[meta], language="en", workers=1, progress=False
        )
    message = str(err.value)
    assert message.startswith("none of the 3 audio files has a transcript.")
    assert f"{meta}: transcript file is not UTF-8 (byte 0xff at offset 0)" in message


# ---------------------------------------------------------------------- 2. m4a/aac/webm/wma via PyAV
def encode(path: Path, wave: np.ndarray, rate: int, container: str, codec: str) -> Path:
    """Encode (L,) float32 mono with PyAV's bundled encoders (what a phone or browser would write)."""
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        stream.bit_rate = 96000
        for i in range(0, wave.shape[0], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(wave[None, i : i + 1024]), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = rate, i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.mark.parametrize(
    ("name", "container", "codec", "rate"),
    [
        ("memo.m4a", "mp4", "aac", 44100),
        ("memo.aac", "adts", "aac", 44100),
        ("call.webm", "webm", "libopus", 48000),
        ("old.wma", "asf", "wmav2", 44100),
    ],
)
def test_compressed_formats_decode(tmp_path, name, container, codec, rate):
    seconds, freq = 2.0, 440.0
    t = np.arange(int(seconds * rate)) / rate
    path = encode(
        tmp_path / name, (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, container, codec
    )
    loaded = load_audio(path)
    assert loaded.sample_rate == rate and loaded.channels == 1
    # encoder delay/padding (or a dropped last partial frame, wma) moves the length by a codec frame or so
    assert loaded.seconds == pytest.approx(seconds, abs=0.1)
    middle = loaded.samples[rate // 2 : rate // 2 + rate]  # one second away from the edges
    spectrum = np.abs(np.fft.rfft(middle))
    assert np.argmax(spectrum) * rate / middle.shape[0] == pytest.approx(freq, abs=2)
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / math.sqrt(2), rel=0.1)


def test_corrupt_m4a_is_a_per_file_reason(tmp_path):
    bad = tmp_path / "broken.m4a"
    bad.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(range(256)) * 8)
    with pytest.raises(AudioLoadError, match=r"not an audio file or a corrupt m4a file \(ffmpeg: "):
        load_audio(bad)


def test_folder_with_m4a_and_unsupported_files(tmp_path, sample_dir):
    folder = tmp_path / "memos"
    folder.mkdir()
    speech, sr = sf.read(sample_dir / "wavs" / "LJ001-0002.flac", dtype="float32")
    encode(folder / "LJ001-0002.m4a", speech, sr, "mp4", "aac")
    (folder / "LJ001-0002.txt").write_text("in being comparatively modern.", encoding="utf-8")
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "take2.amr").write_bytes(b"#!AMR\n" + bytes(64))
    (folder / ".DS_Store").write_bytes(b"\x00")
    found, skipped = discover_audio([folder])
    assert [p.name for p, _ in found] == ["LJ001-0002.m4a"]
    reasons = {Path(s.source).name: s.reason for s in skipped}
    assert set(reasons) == {"cover.jpg", "take2.amr"}
    assert reasons["take2.amr"].startswith("not a supported audio file type (.amr; read: wav, flac, mp3")
    assert "m4a, aac, webm, wma" in reasons["take2.amr"]

    report = prepare([folder], tmp_path / "ds", Config(), language="en", workers=1, progress=False)
    assert [c.id for c in report.clips] == ["LJ001-0002"]
    assert report.clips[0].duration == pytest.approx(speech.shape[0] / sr, abs=0.3)
    assert {Path(s.source).name for s in report.skipped} == {"cover.jpg", "take2.amr"}


# ---------------------------------------------------------------------------------------- 3. clipping
def test_clipped_share_of_a_sine_matches_the_formula():
    # A sine of amplitude A clipped at 1 spends 1 - (2/pi) asin(1/A) of its time at full scale.
    amp, n = 1.25, 32000
    t = np.arange(n) / 32000
    clipped = np.clip(amp * np.sin(2 * np.pi * 100 * t), -1, 1).astype(np.float32)
    expected = 1 - 2 / math.pi * math.asin(1 / amp)  # 0.4097
    result = detect_clipping(clipped)
    assert result.share == pytest.approx(expected, abs=0.005) and result.level == 1.0
    # the same sine unclipped, and one that peaks exactly at full scale, have no flat tops
    assert detect_clipping((0.9 * np.sin(2 * np.pi * 100 * t)).astype(np.float32)).share == 0.0
    full = np.round(32767 * np.sin(2 * np.pi * 100 * t)) / 32768
    assert detect_clipping(full.astype(np.float32)).share == 0.0


@pytest.fixture(scope="module")
def clipping_run(tmp_path_factory, sample_dir):
    tmp = tmp_path_factory.mktemp("clip")
    src = tmp / "in"
    src.mkdir()
    speech, sr = sf.read(sample_dir / "wavs" / "LJ001-0002.flac", dtype="float32")
    speech = speech / np.abs(speech).max()
    shares = {}
    for name, gain in (("heavy", 12.0), ("light", 1.6)):
        loud = np.clip(gain * speech, -1.0, 1.0)
        shares[name] = float(np.mean(np.abs(loud) >= 1.0))
        sf.write(src / f"{name}.wav", loud, sr, subtype="PCM_16")
    sf.write(src / "fullscale.wav", speech, sr, subtype="FLOAT")  # peak exactly 1.0, nothing clipped
    lines = [f"in/{n}.wav|spk|EN|in being comparatively modern." for n in ("heavy", "light", "fullscale")]
    (tmp / "t.list").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = prepare([src], tmp / "ds", Config(), transcripts=[tmp / "t.list"], workers=1, progress=False)
    return report, shares


def _pct(text: str) -> float:
    m = re.search(r"clipped: (\d+\.\d)% of the samples sit in flat runs at full scale", text)
    assert m, text
    return float(m.group(1))


def test_heavy_clipping_is_skipped_with_its_share(clipping_run):
    report, shares = clipping_run
    assert shares["heavy"] > 0.25
    (reason,) = [s.reason for s in report.skipped if s.source.endswith("heavy.wav")]
    # isolated full-scale samples (runs shorter than 3) are not flat tops: at most a little below
    assert 100 * shares["heavy"] - 2.5 <= _pct(reason) <= 100 * shares["heavy"] + 0.05
    assert "more than prepare.clipping_skip_share" in reason


def test_light_clipping_is_a_warning_with_its_share(clipping_run):
    report, shares = clipping_run
    assert 0.001 < shares["light"] < 0.25
    assert "light" in {c.id for c in report.clips}
    (message,) = [w.message for w in report.warnings if w.source.endswith("light.wav")]
    assert 100 * shares["light"] - 0.5 <= _pct(message) <= 100 * shares["light"] + 0.05


def test_exactly_full_scale_is_not_called_a_peak_above_one(clipping_run):
    report, _ = clipping_run
    assert "fullscale" in {c.id for c in report.clips}
    assert [w.message for w in report.warnings if w.source.endswith("fullscale.wav")] == []


# ------------------------------------------------------------------------- 4. tiny validation splits
def test_one_clip_dataset_warns_in_prepare(tmp_path, sample_dir):
    audio = copy_lj(sample_dir, tmp_path / "in", ("LJ001-0002",))
    (audio / "LJ001-0002.txt").write_text("in being comparatively modern.", encoding="utf-8")
    res = runner.invoke(app, ["prepare", str(audio), "--language", "en", "--out", str(tmp_path / "ds"), "-q"])
    assert res.exit_code == 0, res.output
    assert "warning: no validation clip: 1 clip(s) cannot be split" in res.output
    # 0.1 * 25 + 0.5 = 3.0 -> 3 validation clips; 24 clips give floor(2.9) = 2
    assert "about 25 clips give 3 validation clips at val_ratio 0.1" in res.output


def test_two_clip_dataset_warns_that_validation_is_tiny(tmp_path, sample_dir):
    audio = copy_lj(sample_dir, tmp_path / "in", ("LJ001-0002", "LJ001-0008"))
    for p in audio.glob("*.flac"):
        p.with_suffix(".txt").write_text("some words here.", encoding="utf-8")
    report = prepare(
        [audio], tmp_path / "ds", Config(), language="en", workers=1, progress=False, val_list=None
    )
    (w,) = [w for w in report.warnings if w.stage == "split"]
    assert w.message.startswith("only 1 validation clip(s)")
    assert "about 25 clips give 3 validation clips at val_ratio 0.1" in w.message


def test_fit_on_a_one_clip_dataset_says_what_is_wrong(tmp_path, sample_dir):
    audio = copy_lj(sample_dir, tmp_path / "in", ("LJ001-0002",))
    (audio / "LJ001-0002.txt").write_text("in being comparatively modern.", encoding="utf-8")
    data = tmp_path / "ds"
    res = runner.invoke(
        app, ["prepare", str(audio), "-l", "en", "--hubert", "random-tiny", "--out", str(data), "-q"]
    )
    assert res.exit_code == 0, res.output
    repo = Path(__file__).resolve().parents[1]
    res = runner.invoke(
        app,
        [
            "fit",
            "-c",
            str(repo / "configs/tiny.yaml"),
            "--set",
            f"train.dataset={data}",
            "-r",
            str(tmp_path / "run"),
            "-q",
        ],
    )
    assert res.exit_code == 1
    assert "holds a single clip, which cannot be split into training and validation" in res.output
    assert "val_ratio > 0" not in res.output


# ----------------------------------------------------------------------------- 5. --slice-only summary
def test_slice_only_summary_makes_no_split_claim(tmp_path, sample_dir):
    audio = copy_lj(sample_dir, tmp_path / "in", ("LJ001-0002", "LJ001-0008"))
    res = runner.invoke(
        app, ["prepare", str(audio), "--slice-only", "--language", "en", "--out", str(tmp_path / "s")]
    )
    assert res.exit_code == 0, res.output
    table = res.output.split("sources:")[0]
    assert not re.search(r"^(train|val)\s", table, flags=re.M), table
    assert re.search(r"^clips \(no split\)\s+2\s", table, flags=re.M), table
