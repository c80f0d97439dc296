"""Transcript formats (.list, LJSpeech metadata, sidecars), matching to audio files, and their problems."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gptsovits_train.data.sources import collect_sources, safe_id
from gptsovits_train.data.transcripts import LANGUAGE_TAGS, map_language, read_transcript_file
from gptsovits_train.errors import GsvError


@pytest.fixture
def wav_dir(tmp_path: Path, sample_dir: Path) -> Path:
    """Three real LJSpeech clips copied into tmp (FLAC)."""
    d = tmp_path / "audio"
    d.mkdir()
    for name in ("LJ001-0002", "LJ001-0008", "LJ001-0013"):
        shutil.copy(sample_dir / "wavs" / f"{name}.flac", d / f"{name}.flac")
    return d


@pytest.mark.parametrize(
    ("tag", "code"),
    [
        ("ZH", "zh"),
        ("zh", "zh"),
        ("JP", "ja"),
        ("jp", "ja"),
        ("JA", "ja"),
        ("ja", "ja"),
        ("EN", "en"),
        ("en", "en"),
        ("En", "en"),
        ("KO", "ko"),
        ("Ko", "ko"),
        ("ko", "ko"),
        ("yue", "yue"),
        ("YUE", "yue"),
        ("Yue", "yue"),
        ("FR", None),
        ("auto", None),
    ],
)
def test_official_language_tags(tag, code):
    assert map_language(tag) == code


def test_official_tag_set_is_complete():
    assert set(LANGUAGE_TAGS.values()) == {"zh", "ja", "en", "ko", "yue"}


def test_list_format(tmp_path, wav_dir):
    lst = tmp_path / "x.list"
    lst.write_text(
        f"{wav_dir}/LJ001-0002.flac|linda|EN|in being comparatively modern.\n"
        "audio/LJ001-0008.flac|linda|en|has never been surpassed.\n"  # relative to the list's folder
        "audio/LJ001-0013.flac|linda|XX|bad tag\n"
        "only|three|fields\n"
        f"{wav_dir}/LJ001-0002.flac|linda|EN|again\n",
        encoding="utf-8",
    )
    ts = read_transcript_file(lst)
    assert [(e.text, e.language, e.speaker) for e in ts.entries] == [
        ("in being comparatively modern.", "en", "linda"),
        ("has never been surpassed.", "en", "linda"),
    ]
    reasons = [p.reason for p in ts.problems]
    assert any("unknown language tag 'XX'" in r for r in reasons)
    assert any("malformed .list line" in r for r in reasons)
    assert any("duplicate id" in r and ":1" in r for r in reasons)
    assert [p.source.rsplit(":", 1)[1] for p in ts.problems] == ["3", "4", "5"]


def test_ljspeech_two_and_three_fields(tmp_path):
    meta = tmp_path / "metadata.csv"
    meta.write_text(
        "a|Dr. Smith paid $5|Doctor Smith paid five dollars\nb|plain text\nc||\n", encoding="utf-8"
    )
    ts = read_transcript_file(meta)
    assert [(e.key, e.text) for e in ts.entries] == [
        ("a", "Doctor Smith paid five dollars"),  # normalized column preferred
        ("b", "plain text"),
        ("c", ""),
    ]
    assert ts.entries[0].candidates[0] == (tmp_path / "wavs" / "a.flac").absolute()


def test_non_utf8_transcript_is_reported(tmp_path):
    bad = tmp_path / "gbk.list"
    bad.write_bytes("a.wav|spk|ZH|你好世界\n".encode("gbk"))
    ts = read_transcript_file(bad)
    assert ts.entries == []
    assert len(ts.problems) == 1 and "not UTF-8" in ts.problems[0].reason


def test_bom_is_accepted(tmp_path):
    f = tmp_path / "m.csv"
    f.write_bytes("\ufeffa|hello\n".encode())
    assert read_transcript_file(f).entries[0].key == "a"


def test_list_detected_by_content(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("x.wav|spk|ZH|你好\n", encoding="utf-8")
    e = read_transcript_file(f).entries[0]
    assert (e.key, e.language, e.speaker, e.text) == ("x.wav", "zh", "spk", "你好")


def test_collect_sources_matching(tmp_path, wav_dir):
    meta = tmp_path / "metadata.csv"
    meta.write_text(
        "LJ001-0002|in being comparatively modern.\n"
        "LJ001-0008|has never been surpassed.\n"
        "LJ001-0002|duplicate line\n"
        "LJ009-9999|no such file\n",
        encoding="utf-8",
    )
    (wav_dir / "LJ001-0013.txt").write_text("sidecar text\nsecond line\n", encoding="utf-8")
    plan = collect_sources([wav_dir], [meta], language="en", speaker="lj")
    texts = {s.id: (s.transcript.text if s.transcript else None) for s in plan.sources}
    assert texts == {
        "LJ001-0002": "in being comparatively modern.",
        "LJ001-0008": "has never been surpassed.",
        "LJ001-0013": "sidecar text second line",
    }
    assert all(s.language == "en" and s.speaker == "lj" for s in plan.sources)
    reasons = sorted(p.reason for p in plan.skipped)
    assert any(r.startswith("duplicate id 'LJ001-0002'") for r in reasons)
    assert any(r == "points to a missing file: LJ009-9999" for r in reasons)


def test_sources_from_transcripts_alone(tmp_path, sample_dir):
    """No INPUT: LJSpeech ids resolve to <csv folder>/wavs/<id>.flac."""
    plan = collect_sources([], [sample_dir / "metadata.csv"], language="en")
    assert len(plan.sources) == 12
    assert all(s.transcript and s.transcript.text for s in plan.sources)
    assert plan.skipped == []


def test_non_utf8_sidecar(tmp_path, wav_dir):
    (wav_dir / "LJ001-0002.lab").write_bytes("texte accentué".encode("latin-1"))
    plan = collect_sources([wav_dir], [], language="en")
    assert any("not UTF-8" in p.reason for p in plan.skipped)
    src = next(s for s in plan.sources if s.id == "LJ001-0002")
    assert src.transcript is None


def test_ids_and_duplicate_ids(tmp_path, sample_dir):
    root = tmp_path / "in"
    (root / "spk 1").mkdir(parents=True)
    shutil.copy(sample_dir / "wavs" / "LJ001-0002.flac", root / "spk 1" / "a.flac")
    shutil.copy(sample_dir / "wavs" / "LJ001-0002.flac", root / "b.flac")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(sample_dir / "wavs" / "LJ001-0002.flac", other / "b.flac")
    plan = collect_sources([root, other], [], language="en")
    assert sorted(s.id for s in plan.sources) == ["b", "spk_1__a"]
    assert [p.reason for p in plan.skipped] == [f"duplicate id 'b' (also used by {root / 'b.flac'})"]
    assert safe_id("我的 录音(1)") == "我的_录音_1"


def test_missing_input_and_non_audio_input(tmp_path):
    with pytest.raises(GsvError, match="input not found"):
        collect_sources([tmp_path / "nope"], [], language="en")
    txt = tmp_path / "notes.txt"
    txt.write_text("hi", encoding="utf-8")
    plan = collect_sources([txt], [], language="en")
    assert plan.sources == [] and "not a supported audio file type (.txt;" in plan.skipped[0].reason
