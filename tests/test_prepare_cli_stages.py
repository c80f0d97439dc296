"""`gsv-train prepare` wires the text, feature and ASR stages and the official-folder import (CLI level)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gptsovits_train.cli import app
from gptsovits_train.data.manifest import read_manifest
from gptsovits_train.features import check_features
from gptsovits_train.layout import DatasetLayout
from tests.features_helpers import build_tiny_hubert, build_tiny_whisper, lj_waves_32k
from tests.test_official_import import build_exp

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_hubert(tmp_path_factory) -> Path:
    return build_tiny_hubert(tmp_path_factory.mktemp("hubert") / "tiny")


@pytest.fixture(autouse=True)
def _no_downloaded_models(tmp_path, monkeypatch):
    # A user's downloaded pretrained files must not leak into these tests.
    monkeypatch.setenv("GSV_TRAIN_PRETRAINED", str(tmp_path / "no-pretrained"))


def test_sample_with_hubert_has_everything_fit_needs(tmp_path, tiny_hubert, reference_dir):
    out = tmp_path / "ds"
    args = ["prepare", "--sample", "--out", str(out), "--hubert", str(tiny_hubert), "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    layout = DatasetLayout(out)
    clips = read_manifest(layout.manifest)
    assert len(clips) == 12
    symbols = json.loads((reference_dir / "symbols_v2.json").read_text())["symbols"]
    for clip in clips:
        # Phone ids index the official v2 table and spell the phones.
        assert clip.phones and clip.phone_ids and clip.text_version == "v2"
        assert [symbols[i] for i in clip.phone_ids] == clip.phones
        ssl = np.load(layout.ssl(clip.id), allow_pickle=False)
        assert ssl.shape == (768, clip.n_frames)
    check_features(layout, clips)
    assert {c.split for c in clips} == {"train", "val"}


def test_without_hubert_the_user_is_told_what_to_run(tmp_path):
    out = tmp_path / "ds"
    result = runner.invoke(app, ["prepare", "--sample", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "download-pretrained" in result.output and "no HuBERT model" in result.output
    clips = read_manifest(DatasetLayout(out).manifest)
    assert all(c.ssl is None and c.phone_ids for c in clips)


def test_asr_transcribes_sources_without_text(tmp_path):
    whisper = build_tiny_whisper(tmp_path / "whisper", languages=("en",), text_chars="abc")
    src = tmp_path / "src"
    src.mkdir()
    # Two real recordings with no transcript anywhere.
    sample_wavs = Path(__file__).resolve().parents[1] / "gptsovits_train" / "sample_data" / "wavs"
    for flac in sorted(sample_wavs.glob("*.flac"))[:2]:
        shutil.copy(flac, src / flac.name)
    out = tmp_path / "ds"
    result = runner.invoke(app, ["prepare", str(src), "--out", str(out), "--asr", str(whisper), "-q"])
    assert result.exit_code == 0, result.output
    clips = read_manifest(DatasetLayout(out).manifest)
    assert clips
    for clip in clips:
        assert clip.language == "en"
        assert clip.text and set(clip.text.replace(" ", "")) <= set("abc")


def test_from_official_imports_the_folder(tmp_path):
    made = build_exp(tmp_path, lj_waves_32k(4, max_seconds=2.5, mix=False))
    out = tmp_path / "ds"
    result = runner.invoke(app, ["prepare", "--from-official", str(made["exp"]), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    layout = DatasetLayout(out)
    clips = read_manifest(layout.manifest)
    assert sorted(f"{c.id}.wav" for c in clips) == sorted(made["truth"])
    check_features(layout, clips)


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["--device", "tpu"], "--device"),
        (["--asr", "/no/such/folder"], "--asr"),
        (["--from-official", "/no/such/folder"], "--from-official"),
    ],
)
def test_bad_option_values_exit_2_naming_the_option(tmp_path, args, hint):
    result = runner.invoke(app, ["prepare", "--sample", "--out", str(tmp_path / "ds"), *args])
    assert result.exit_code == 2
    assert hint in result.output
