"""`gsv-train prepare` through Typer's CliRunner: the README demo, exit codes, option/config errors."""

from __future__ import annotations

import json
import shutil

import pytest
import soundfile as sf
from typer.testing import CliRunner

from gptsovits_train.cli import app
from gptsovits_train.data.manifest import read_manifest

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["prepare", *args], catch_exceptions=False)


def test_demo_prepare_sample_end_to_end(tmp_path):
    """The README demo command: `gsv-train prepare --sample --out DIR`."""
    out = tmp_path / "demo"
    res = invoke("--sample", "--out", str(out), "--workers", "2")
    assert res.exit_code == 0, res.output
    clips = read_manifest(out / "manifest.jsonl")
    assert len(clips) == 12
    assert sum(c.split == "val" for c in clips) == 1  # round(12 * 0.1) = 1
    assert all(c.language == "en" and c.speaker == "ljspeech" and c.text for c in clips)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["clips"] == 12 and report["skipped"] == []
    assert (out / "report.png").is_file() and (out / "prepare_config.yaml").is_file()
    # one validation clip of 12 is the only warning: too few for a steady validation loss
    assert "prepared 12 clips" in res.output and "1 warnings" in res.output
    assert "warning [split] split: only 1 validation clip(s)" in res.output
    assert "train" in res.output and "val" in res.output  # the summary table
    # running it again resumes
    res2 = invoke("--sample", "--out", str(out), "-q")
    assert res2.exit_code == 0 and "prepared 12 clips" in res2.output
    assert json.loads((out / "report.json").read_text())["sources_reused"] == 12


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--workers", "0"], "--workers"),
        (["--val-ratio", "1.5"], "--val-ratio"),
        (["--language", "fr"], "--language"),
        (["--set", "prepare.slicer.threshhold_db=-30"], "prepare.slicer.threshhold_db"),
        (["--set", "prepare.min_clip_seconds=-1"], "prepare.min_clip_seconds"),
        (["--val-list", "/no/such/file"], "--val-list"),
    ],
)
def test_bad_options_exit_2_naming_the_option(tmp_path, args, needle):
    res = invoke("--sample", "--out", str(tmp_path / "o"), *args)
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert not (tmp_path / "o").exists()


def test_missing_input_exit_2(tmp_path):
    res = invoke(str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert res.exit_code == 2 and "nope" in res.output


def test_no_transcript_exits_1_with_ways_out(tmp_path, sample_dir):
    (tmp_path / "in").mkdir()
    shutil.copy(sample_dir / "wavs" / "LJ001-0002.flac", tmp_path / "in")
    res = invoke(str(tmp_path / "in"), "--out", str(tmp_path / "o"))
    assert res.exit_code == 1
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("error: none of the 1 audio files has a transcript")
    assert "--slice-only" in line and "--transcripts" in line


def test_no_usable_clip_exits_1_with_one_line(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.wav").write_bytes(b"")
    (tmp_path / "in" / "a.txt").write_text("hello", encoding="utf-8")
    res = invoke(str(tmp_path / "in"), "--out", str(tmp_path / "o"), "-q")
    assert res.exit_code == 1
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "no usable clip" in errors[0]
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["skipped"][0]["reason"] == "empty file (0 bytes)"


def test_bad_files_still_exit_0_with_warning_count(tmp_path, sample_dir):
    (tmp_path / "in").mkdir()
    shutil.copy(sample_dir / "wavs" / "LJ001-0002.flac", tmp_path / "in" / "good.flac")
    (tmp_path / "in" / "good.txt").write_text("in being comparatively modern.", encoding="utf-8")
    (tmp_path / "in" / "bad.wav").write_text("not audio", encoding="utf-8")
    (tmp_path / "in" / "bad.txt").write_text("text", encoding="utf-8")
    x, sr = sf.read(sample_dir / "wavs" / "LJ001-0008.flac", dtype="float32")
    sf.write(tmp_path / "in" / "u8.wav", x, sr, subtype="PCM_U8")
    (tmp_path / "in" / "u8.txt").write_text("has never been surpassed.", encoding="utf-8")
    res = invoke(str(tmp_path / "in"), "--out", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output
    # warnings: the 8-bit file, and one validation clip of 2
    assert "prepared 2 clips" in res.output and "1 skipped, 2 warnings" in res.output


def test_seed_val_ratio_and_val_list(tmp_path):
    res = invoke("--sample", "--out", str(tmp_path / "a"), "--val-ratio", "0.25", "--seed", "7", "-q")
    assert res.exit_code == 0
    clips = read_manifest(tmp_path / "a" / "manifest.jsonl")
    assert sum(c.split == "val" for c in clips) == 3
    vl = tmp_path / "val.txt"
    vl.write_text("LJ001-0002\nwavs/LJ001-0029.wav\nLJ999\n", encoding="utf-8")
    res = invoke("--sample", "--out", str(tmp_path / "b"), "--val-list", str(vl), "-q")
    # LJ999 matches no clip; 2 validation clips are few
    assert res.exit_code == 0 and "2 warnings" in res.output
    assert "only 2 validation clip(s)" in res.output and "name more clips in --val-list" in res.output
    clips = read_manifest(tmp_path / "b" / "manifest.jsonl")
    assert sorted(c.id for c in clips if c.split == "val") == ["LJ001-0002", "LJ001-0029"]


def test_slice_only_cli(tmp_path, sample_dir):
    import numpy as np

    parts = []
    for n in ("LJ001-0002", "LJ001-0004", "LJ001-0006"):
        x, sr = sf.read(sample_dir / "wavs" / f"{n}.flac", dtype="float32")
        parts += [x, np.zeros(sr, np.float32)]
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "talk.wav", np.concatenate(parts), sr)
    res = invoke(str(tmp_path / "in"), "--out", str(tmp_path / "s"), "--slice-only", "--language", "en", "-q")
    assert res.exit_code == 0, res.output
    assert "transcripts_template.list" in res.output
    lines = (tmp_path / "s" / "transcripts_template.list").read_text().splitlines()
    assert lines and all(ln.endswith("|in|EN|") and ln.startswith("wavs/talk_") for ln in lines)
