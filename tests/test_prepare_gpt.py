"""`prepare` with `prepare.stages: [sovits, gpt]`: semantic codes and BERT features in the dataset, the report
block, resume, and sovits-only datasets unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gptsovits_train.cli import app
from gptsovits_train.config import Config
from gptsovits_train.data.gpt_view import gpt_filter_reason
from gptsovits_train.data.manifest import read_manifest
from gptsovits_train.data.prepare import prepare
from gptsovits_train.errors import GsvError
from gptsovits_train.features.hubert import expected_frames
from gptsovits_train.layout import DatasetLayout
from tests.features_helpers import build_tiny_hubert
from tests.test_bert import HIDDEN, build_tiny_bert

SAMPLE_WAVS = Path(__file__).resolve().parents[1] / "gptsovits_train" / "sample_data" / "wavs"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"hubert": build_tiny_hubert(root / "hubert"), "bert": build_tiny_bert(root / "bert")}


@pytest.fixture(autouse=True)
def _no_downloaded_models(tmp_path, monkeypatch):
    monkeypatch.setenv("GSV_TRAIN_PRETRAINED", str(tmp_path / "no-pretrained"))


def _sources(tmp_path: Path) -> Path:
    """Two real recordings, one transcribed as Mandarin and one as English (the words need not match)."""
    src = tmp_path / "src"
    src.mkdir()
    flacs = sorted(SAMPLE_WAVS.glob("*.flac"))[:2]
    for f in flacs:
        shutil.copy(f, src / f.name)
    lines = [
        f"{src / flacs[0].name}|spk|ZH|你好，今天天气很好。",
        f"{src / flacs[1].name}|spk|EN|Hello world, this is a test.",
    ]
    listing = tmp_path / "data.list"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return listing


def _cfg(models: dict[str, Path], stages: list[str]) -> Config:
    cfg = Config()
    p = cfg.prepare
    p.features = p.features.model_copy(update={"hubert": str(models["hubert"]), "device": "cpu"})
    p.semantic = p.semantic.model_copy(update={"model": "random-tiny", "device": "cpu"})
    p.bert = p.bert.model_copy(update={"model": str(models["bert"]), "device": "cpu", "hidden_size": HIDDEN})
    p.stages = stages  # type: ignore[assignment]
    return cfg


def test_gpt_stages_fill_the_manifest_and_the_report(tmp_path, models):
    listing = _sources(tmp_path)
    out = tmp_path / "ds"
    report = prepare(
        [], out, _cfg(models, ["sovits", "gpt"]), transcripts=[listing], workers=1, progress=False
    )
    layout = DatasetLayout(out)
    clips = {c.language: c for c in read_manifest(layout.manifest)}
    assert set(clips) == {"zh", "en"}
    for clip in clips.values():
        codes = np.load(layout.root / (clip.semantic or "missing"))
        assert codes.ndim == 1 and np.issubdtype(codes.dtype, np.integer)
        assert len(codes) == expected_frames(clip.n_samples) // 2
    zh, en = clips["zh"], clips["en"]
    assert en.bert is None
    bert = np.load(layout.root / (zh.bert or "missing"))
    assert bert.shape == (HIDDEN, len(zh.phone_ids or [])) and bert.dtype == np.float16
    data = json.loads(layout.report_json.read_text())
    assert data["stages"][-2:] == ["extract_semantic", "extract_bert"]
    gpt = data["gpt"]
    assert gpt["clips_with_semantic"] == 2 and gpt["clips_with_bert"] == 1
    assert gpt["zh_clips_without_bert"] == 0 and gpt["skipped"] == {"semantic": 0, "bert": 0}
    assert any("semantic codes come from a RANDOM" in w["message"] for w in data["warnings"])
    assert report.n_clips == 2

    # resume: nothing of the GPT stages is computed again
    stamps = {
        p: p.stat().st_mtime_ns for d in (layout.semantic_dir, layout.bert_dir) for p in d.glob("*.npy")
    }
    prepare([], out, _cfg(models, ["sovits", "gpt"]), transcripts=[listing], workers=1, progress=False)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # back to sovits only: the GPT files are left alone (not listed), and --force removes them
    prepare([], out, _cfg(models, ["sovits"]), transcripts=[listing], workers=1, progress=False, force=True)
    assert not layout.semantic_dir.exists() and not layout.bert_dir.exists()
    data = json.loads(layout.report_json.read_text())
    assert "gpt" not in data
    assert all(c.semantic is None and c.bert is None for c in read_manifest(layout.manifest))


def test_sovits_only_is_the_default_and_writes_no_gpt_files(tmp_path, models):
    assert Config().prepare.stages == ["sovits"]
    listing = _sources(tmp_path)
    out = tmp_path / "ds"
    cfg = _cfg(models, ["sovits"])
    prepare([], out, cfg, transcripts=[listing], workers=1, progress=False)
    layout = DatasetLayout(out)
    assert not layout.semantic_dir.exists() and not layout.bert_dir.exists()
    assert not layout.semantic_stamp.exists() and not layout.bert_stamp.exists()
    data = json.loads(layout.report_json.read_text())
    assert "gpt" not in data and data["stages"] == ["audio", "phonemize_clips", "extract_features"]


def test_gpt_without_hubert_is_one_clear_error(tmp_path, models):
    listing = _sources(tmp_path)
    cfg = _cfg(models, ["sovits", "gpt"])
    cfg.prepare.features = cfg.prepare.features.model_copy(update={"hubert": None})
    with pytest.raises(GsvError, match="HuBERT features"):
        prepare([], tmp_path / "ds", cfg, transcripts=[listing], workers=1, progress=False)


def test_cli_set_stages(tmp_path, models):
    listing = _sources(tmp_path)
    out = tmp_path / "ds"
    args = [
        "prepare",
        "--transcripts",
        str(listing),
        "--out",
        str(out),
        "--hubert",
        str(models["hubert"]),
        "--set",
        "prepare.stages=[sovits, gpt]",
        "--set",
        "prepare.semantic.model=random-tiny",
        "--set",
        f"prepare.bert.model={models['bert']}",
        "--set",
        f"prepare.bert.hidden_size={HIDDEN}",
        "-q",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    clips = read_manifest(DatasetLayout(out).manifest)
    assert all(c.semantic for c in clips) and sum(1 for c in clips if c.bert) == 1


def test_official_gpt_filters_match_the_official_dataset_run(reference_dir):
    """The 12 candidate lines the official `Text2SemanticDataset` was run on (t2s_parity_tiny.pt meta): every
    clip it kept or dropped for its length or phone rate gets the same verdict here."""
    import torch

    meta = torch.load(reference_dir / "t2s_parity_tiny.pt", weights_only=True)["meta"]["dataset"]
    checked = 0
    for name, case in meta["candidates"].items():
        verdict = case["expected"].split(":")[0].split(" ")[0]
        if verdict not in ("kept", "dropped"):
            continue  # text-file problems (no line, bad line), not the length/rate filters
        reason = gpt_filter_reason(case["codes"], case["phones"])
        assert (reason is None) == (verdict == "kept"), (name, case, reason)
        checked += 1
    assert checked == 9
    assert sorted(meta["kept_in_tsv_order"]) == sorted(
        n for n, c in meta["candidates"].items() if c["expected"].startswith("kept")
    )
    assert gpt_filter_reason(0, 0) == "no semantic codes"


def test_report_lists_the_clips_the_gpt_filters_drop(tmp_path):
    from gptsovits_train.data.gpt_view import gpt_report
    from gptsovits_train.data.manifest import Clip
    from gptsovits_train.data.report_types import Skipped

    layout = DatasetLayout(tmp_path)
    clips = []
    for cid, n_codes, n_phones, lang in (("ok", 50, 20, "zh"), ("fast", 25, 30, "en"), ("nosem", 0, 5, "en")):
        clip = Clip(
            cid, f"wavs/{cid}.wav", "/s", 0.0, 1.0, 1.0, "t", lang, "s", phone_ids=list(range(n_phones))
        )
        if n_codes:
            np.save(layout.root / f"{cid}.npy", np.zeros(n_codes, dtype=np.int64))
            clip.semantic = f"{cid}.npy"
        clips.append(clip)
    block = gpt_report(layout.root, clips, [Skipped("x", "why", "semantic")])
    assert block is not None
    assert block["filtered"] == [{"id": "fast", "split": "train", "reason": gpt_filter_reason(25, 30)}]
    assert "30.00 phones per second" in block["filtered"][0]["reason"]
    assert block["clips_with_semantic"] == 2 and block["zh_clips_without_bert"] == 1
    assert block["skipped"] == {"semantic": 1, "bert": 0}
    assert gpt_report(layout.root, [Clip("a", "w", "/s", 0.0, 1.0, 1.0, "t", "en", "s")], []) is None
