"""Resume: a second run reuses finished sources, redoes what is missing or changed, never leaves partial
files; --force starts over."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import gptsovits_train.data.prepare as prep_mod
from gptsovits_train.config import Config
from gptsovits_train.data.prepare import prepare
from gptsovits_train.errors import Interrupted
from gptsovits_train.layout import DatasetLayout

NAMES = ["LJ001-0002", "LJ001-0004", "LJ001-0006", "LJ001-0008", "LJ001-0011", "LJ001-0013"]


@pytest.fixture
def src(tmp_path: Path, sample_dir: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    lines = {
        ln.split("|")[0]: ln.split("|")[1] for ln in (sample_dir / "metadata.csv").read_text().splitlines()
    }
    for n in NAMES:
        shutil.copy(sample_dir / "wavs" / f"{n}.flac", d / f"{n}.flac")
        (d / f"{n}.txt").write_text(lines[n], encoding="utf-8")
    return d


def snapshot(layout: DatasetLayout) -> dict[str, int]:
    """mtime_ns of every clip file (changes when a file is rewritten)."""
    return {p.name: p.stat().st_mtime_ns for d in (layout.wavs_dir, layout.spec_dir) for p in d.iterdir()}


def run(src: Path, out: Path, **kw):
    return prepare([src], out, Config(), workers=1, progress=False, **kw)


def stray_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp-" in p.name]


def test_second_run_reuses_everything(tmp_path, src):
    out = tmp_path / "ds"
    first = run(src, out)
    before = snapshot(DatasetLayout(out))
    manifest = (out / "manifest.jsonl").read_bytes()
    second = run(src, out)
    assert (first.n_sources_reused, second.n_sources_reused) == (0, 6)
    assert snapshot(DatasetLayout(out)) == before  # nothing rewritten
    assert (out / "manifest.jsonl").read_bytes() == manifest


def test_resume_after_lost_outputs(tmp_path, src):
    out = tmp_path / "ds"
    layout = DatasetLayout(out)
    run(src, out)
    manifest = (out / "manifest.jsonl").read_bytes()
    before = snapshot(layout)
    # a crash can leave: a source whose record was never written, a clip file cut short, a stray temp file
    records = {json.loads(r.read_text())["source"]: r for r in (layout.work_dir / "sources").glob("*.json")}
    records[str(src / "LJ001-0004.flac")].unlink()
    (layout.wavs_dir / "LJ001-0006.wav").write_bytes(b"RIFF")  # truncated by a power cut
    (layout.wavs_dir / ".LJ001-0011.wav.tmp-abc").write_bytes(b"partial")
    again = run(src, out)
    assert again.n_sources_reused == 4
    after = snapshot(layout)
    changed = {k for k in before if after.get(k) != before[k]}
    # two sources redone (wav + spec each), the others untouched
    assert changed == {"LJ001-0004.wav", "LJ001-0004.npy", "LJ001-0006.wav", "LJ001-0006.npy"}
    assert (out / "manifest.jsonl").read_bytes() == manifest
    assert stray_files(out) == []


def test_interrupted_run_then_resume(tmp_path, src, monkeypatch):
    out = tmp_path / "ds"
    calls = {"n": 0}
    real = prep_mod.process_source

    def crashing(job):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # the user presses Ctrl-C during the 4th source
        return real(job)

    monkeypatch.setattr(prep_mod, "process_source", crashing)
    with pytest.raises(Interrupted) as info:
        run(src, out)
    assert info.value.exit_code == 130
    assert "3 of 6 source files done" in str(info.value) and "same command again to resume" in str(info.value)
    layout = DatasetLayout(out)
    assert not layout.manifest.exists() and not layout.report_json.exists()
    assert len(list((layout.work_dir / "sources").glob("*.json"))) == 3
    assert stray_files(out) == []
    monkeypatch.setattr(prep_mod, "process_source", real)
    rep = run(src, out)
    assert rep.n_sources_reused == 3 and rep.n_clips == 6


def test_changed_inputs_and_settings(tmp_path, src):
    out = tmp_path / "ds"
    run(src, out)
    # a changed transcript redoes only that source
    (src / "LJ001-0002.txt").write_text("a different text", encoding="utf-8")
    rep = run(src, out)
    assert rep.n_sources_reused == 5
    assert next(c for c in rep.clips if c.id == "LJ001-0002").text == "a different text"
    # a removed source disappears with its files
    (src / "LJ001-0013.flac").unlink()
    rep = run(src, out)
    assert rep.n_clips == 5 and not (out / "wavs" / "LJ001-0013.wav").exists()
    assert not (out / "spec" / "LJ001-0013.npy").exists()
    # an audio setting change redoes everything
    cfg = Config()
    cfg.prepare.loudness.alpha = 0.3
    rep = prepare([src], out, cfg, workers=1, progress=False)
    assert rep.n_sources_reused == 0


def test_force_starts_over(tmp_path, src):
    out = tmp_path / "ds"
    run(src, out)
    rep = run(src, out, force=True)
    assert rep.n_sources_reused == 0 and rep.n_clips == 6
