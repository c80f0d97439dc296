"""The v2Pro/v2ProPlus speaker-verification stage of `prepare`, `--from-official` 7-sv_cn, download names."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from gptsovits_train.config import Config, load_config
from gptsovits_train.data.manifest import read_manifest
from gptsovits_train.data.official_import import import_official
from gptsovits_train.data.prepare import default_post_audio_stages
from gptsovits_train.data.stages import stage_name
from gptsovits_train.errors import GsvError
from gptsovits_train.features.sv import SV_RANDOM_NOTICE, SvFeaturizer, load_sv_model, random_tiny_config
from gptsovits_train.features.sv_extract import extract_sv_features, read_sv_stamp
from gptsovits_train.layout import DatasetLayout
from gptsovits_train.pretrained import SV_FILE, download_pretrained, find_pretrained, pretrained_files
from tests.fit_helpers import make_dataset
from tests.test_official_import import build_exp
from tests.test_pretrained import contents, make_hf_cache


def _sv_config(model: str = "random-tiny") -> Config:
    return load_config(
        None, ["model.version=v2Pro", f"prepare.features.sv={model}", "prepare.features.device=cpu"]
    )


@pytest.fixture
def dataset(tmp_path: Path) -> DatasetLayout:
    return make_dataset(tmp_path / "data", n_train=3, n_val=1, max_seconds=1.2)


def test_stage_is_registered_only_with_a_model() -> None:
    assert "extract_sv_features" in [stage_name(s) for s in default_post_audio_stages(_sv_config())]
    assert "extract_sv_features" not in [stage_name(s) for s in default_post_audio_stages(Config())]


def test_random_tiny_stage_writes_features_stamp_and_warning(dataset: DatasetLayout) -> None:
    clips = read_manifest(dataset.manifest)
    result = extract_sv_features(dataset, clips, _sv_config())
    assert [c.id for c in result.clips] == [c.id for c in clips] and not result.skipped
    assert [w.message for w in result.warnings] == [SV_RANDOM_NOTICE]
    size = random_tiny_config().feature_size
    assert size == 1280
    featurizer = SvFeaturizer(load_sv_model("random-tiny"), "cpu")
    for clip in result.clips:
        assert clip.sv == f"sv/{clip.id}.npy"
        arr = np.load(dataset.root / clip.sv)
        assert arr.shape == (size,) and arr.dtype == np.float32
        # the stored feature is the featurizer's output on the clip as stored (loudness mix already in it)
        wave = sf.read(dataset.root / clip.path, dtype="int16")[0].astype(np.float32) / 32768
        assert np.array_equal(arr, featurizer.features(wave))
    stamp = read_sv_stamp(dataset)
    assert stamp is not None and stamp.random and stamp.feature_size == size


def test_stage_resumes_and_reports_bad_clips(dataset: DatasetLayout) -> None:
    clips = read_manifest(dataset.manifest)
    extract_sv_features(dataset, clips, _sv_config())
    first = dataset.sv(clips[0].id)
    before = first.stat().st_mtime_ns
    # a damaged wav and a short one: reported with a reason, the others untouched
    dataset.wav(clips[1].id).write_bytes(b"RIFF....")
    dataset.sv(clips[1].id).unlink()
    clips = read_manifest(dataset.manifest)
    result = extract_sv_features(dataset, clips, _sv_config())
    assert first.stat().st_mtime_ns == before
    assert [s.source for s in result.skipped] == [clips[1].id]
    assert result.skipped[0].stage == "sv" and "cannot read" in result.skipped[0].reason
    assert clips[1].id not in [c.id for c in result.clips]


def test_finished_dataset_does_not_load_the_model(
    dataset: DatasetLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gptsovits_train.features.sv_extract as stage

    extract_sv_features(dataset, read_manifest(dataset.manifest), _sv_config())

    def refuse(spec: str) -> None:
        raise AssertionError(f"loaded {spec}")

    monkeypatch.setattr(stage, "load_sv_model", refuse)
    result = extract_sv_features(dataset, read_manifest(dataset.manifest), _sv_config())
    assert len(result.clips) == 4 and all(c.sv for c in result.clips)


def test_model_change_recomputes(dataset: DatasetLayout, tmp_path: Path) -> None:
    clips = read_manifest(dataset.manifest)
    extract_sv_features(dataset, clips, _sv_config())
    old = np.load(dataset.sv(clips[0].id))
    os.utime(dataset.sv(clips[0].id), ns=(1, 1))  # an old time stamp: a rewrite gives a new one
    # the same tiny structure with other weights, as a "real" checkpoint would be refused (not the official
    # structure): the official structure is checked by test_sv_parity; here a stale stamp must be noticed
    stamp = dataset.sv_stamp.read_text().replace('"digest": "', '"digest": "x')
    dataset.sv_stamp.write_text(stamp)
    extract_sv_features(dataset, read_manifest(dataset.manifest), _sv_config())
    assert dataset.sv(clips[0].id).stat().st_mtime_ns != 1  # deleted and written again
    assert np.array_equal(np.load(dataset.sv(clips[0].id)), old)  # same model, same values
    assert '"digest": "x' not in dataset.sv_stamp.read_text()


def test_missing_weights_file_is_one_clear_error(dataset: DatasetLayout, tmp_path: Path) -> None:
    with pytest.raises(GsvError, match="download-pretrained --version v2Pro"):
        extract_sv_features(dataset, read_manifest(dataset.manifest), _sv_config(str(tmp_path / "nope.ckpt")))


def test_from_official_imports_7_sv_cn(tmp_path: Path) -> None:
    from tests.features_helpers import lj_waves_32k

    made = build_exp(tmp_path, lj_waves_32k(3, max_seconds=2.0, mix=False))
    exp = made["exp"]
    (exp / "7-sv_cn").mkdir()
    names = sorted(made["truth"])
    rng = np.random.default_rng(0)
    feats = {}
    for i, name in enumerate(names[:2]):  # the third clip has no sv file
        t = torch.from_numpy(
            (rng.standard_normal((1, 20480)) * 20).astype(np.float16 if i == 0 else np.float32)
        )
        torch.save(t, exp / "7-sv_cn" / f"{name}.pt")
        feats[name] = t
    report = import_official(exp, tmp_path / "ds", Config())
    layout = DatasetLayout(tmp_path / "ds")
    clips = {c.extra["official_name"]: c for c in read_manifest(layout.manifest)}
    assert sorted(clips) == names[:2]
    reasons = {s.source: s.reason for s in report.skipped}
    assert reasons[names[2]] == f"no 7-sv_cn/{names[2]}.pt"
    for name, t in feats.items():
        arr = np.load(layout.root / str(clips[name].sv))
        assert arr.dtype == t.numpy().dtype and np.array_equal(arr, t[0].numpy())
    stamp = read_sv_stamp(layout)
    assert stamp is not None and stamp.feature_size == 20480 and not stamp.random

    # re-import without 7-sv_cn: no stale sv files or stamp remain
    for f in (exp / "7-sv_cn").iterdir():
        f.unlink()
    (exp / "7-sv_cn").rmdir()
    import_official(exp, tmp_path / "ds", Config())
    assert not list(layout.sv_dir.glob("*.npy")) and read_sv_stamp(layout) is None
    assert all(c.sv is None for c in read_manifest(layout.manifest))


@pytest.mark.parametrize("version", ["v2Pro", "v2ProPlus"])
def test_download_pretrained_pro_names(tmp_path: Path, version: str) -> None:
    files = [f.repo_path for f in pretrained_files(version)]
    assert files[-3:] == [f"v2Pro/s2G{version}.pth", f"v2Pro/s2D{version}.pth", SV_FILE]
    assert SV_FILE == "sv/pretrained_eres2netv2w24s4ep4.ckpt"
    assert SV_FILE not in [f.repo_path for f in pretrained_files("v2")]
    make_hf_cache(tmp_path / "cache", contents(files))
    got = download_pretrained(tmp_path / "dest", version, cache_dir=tmp_path / "cache", local_files_only=True)
    assert got.sv_file == tmp_path / "dest" / SV_FILE and got.sv_file.is_file()
    found = find_pretrained(tmp_path / "dest", version)
    assert found is not None and found.sv_file == got.sv_file


def test_prepare_uses_downloaded_sv_for_pro(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gptsovits_train.data.prepare_request import use_downloaded_sv as _resolve_sv

    files = [f.repo_path for f in pretrained_files("v2Pro")]
    make_hf_cache(tmp_path / "cache", contents(files))
    download_pretrained(tmp_path / "dest", "v2Pro", cache_dir=tmp_path / "cache", local_files_only=True)
    monkeypatch.setenv("GSV_TRAIN_PRETRAINED", os.fspath(tmp_path / "dest"))
    cfg = load_config(None, ["model.version=v2Pro"])
    _resolve_sv(cfg)
    assert cfg.prepare.features.sv == str(tmp_path / "dest" / SV_FILE)
    v2 = Config()
    _resolve_sv(v2)
    assert v2.prepare.features.sv is None
