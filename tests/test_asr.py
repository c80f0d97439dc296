"""ASR stage wiring with a tiny random Whisper built here (output format and routing, not accuracy)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from gptsovits_train.config import Config
from gptsovits_train.data.asr import AsrError, AsrStage, WhisperAsr
from tests.features_helpers import build_tiny_whisper, lj_waves_32k, make_dataset


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_whisper(tmp_path_factory.mktemp("asr") / "whisper", languages=("en", "zh"))


@pytest.fixture(scope="module")
def lj():
    return lj_waves_32k(3, max_seconds=2.5)


def test_transcribe_returns_text_and_detected_language(whisper_dir, lj):
    asr = WhisperAsr(whisper_dir, device="cpu")
    assert asr.multilingual
    waves16 = [w[::2].copy() for _, w in lj]
    out = asr.transcribe(waves16)
    assert len(out) == 3
    for res in out:
        assert re.fullmatch(r"[abc]+", res.text), res.text
        assert res.language in {"en", "zh"}
        assert res.manifest_language == res.language
    # a forced language is used as given
    assert {r.language for r in asr.transcribe(waves16[:1], language="zh")} == {"zh"}
    with pytest.raises(ValueError, match="longer than Whisper"):
        asr.transcribe([np.zeros(31 * 16000, np.float32)])


def test_stage_fills_clips_without_text_and_records_them(tmp_path, whisper_dir, lj, monkeypatch):
    layout, clips = make_dataset(tmp_path / "ds", lj)
    clips[0].text = "kept as is"
    clips[1].text = clips[2].text = ""
    clips[1].language = clips[2].language = ""
    stage = AsrStage(whisper_dir, device="cpu", batch_size=2)
    res = stage(layout, clips, Config())
    assert [c.id for c in res.clips] == [c.id for c in clips] and not res.skipped
    assert res.clips[0].text == "kept as is"
    for clip in res.clips[1:]:
        assert re.fullmatch(r"[abc]+", clip.text) and clip.language in {"en", "zh"}
        rec = json.loads(layout.asr_record(clip.id).read_text())
        assert rec["text"] == clip.text and rec["language"] == clip.language
    assert not layout.asr_record(clips[0].id).exists()
    assert any("transcribed by Whisper" in w.message for w in res.warnings)

    # resume: the records are used, Whisper is not loaded again
    import gptsovits_train.data.asr as asr_mod

    def no_model(*a, **k):
        raise AssertionError("Whisper must not be loaded when every clip has a record")

    monkeypatch.setattr(asr_mod, "WhisperAsr", no_model)
    for c in clips[1:]:
        c.text = ""
    again = stage(layout, clips, Config())
    assert [c.text for c in again.clips] == [c.text for c in res.clips]


def test_unsupported_language_is_skipped_with_reason(tmp_path, lj):
    french = build_tiny_whisper(tmp_path / "fr", languages=("fr",))
    layout, clips = make_dataset(tmp_path / "ds", lj[:2])
    for c in clips:
        c.text = ""
    res = AsrStage(french, device="cpu")(layout, clips, Config())
    assert res.clips == []
    assert {s.reason for s in res.skipped} == {
        "Whisper detected language 'fr', not one of zh, en, ja, ko, yue"
    }
    assert all(s.stage == "asr" for s in res.skipped)


def test_silence_transcript_is_skipped(tmp_path, lj):
    blank = build_tiny_whisper(tmp_path / "blank", text_chars=" ")
    layout, clips = make_dataset(tmp_path / "ds", lj[:1])
    clips[0].text = ""
    res = AsrStage(blank, device="cpu")(layout, clips, Config())
    assert res.clips == [] and [s.reason for s in res.skipped] == ["Whisper heard no text"]


def test_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(AsrError, match="Whisper folder not found"):
        AsrStage(tmp_path / "missing")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    with pytest.raises(AsrError, match="'hubert' model, not Whisper"):
        AsrStage(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    with pytest.raises(AsrError, match="cannot load Whisper"):
        WhisperAsr(tmp_path, device="cpu")
