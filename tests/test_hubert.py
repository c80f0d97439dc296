"""HuBERT features: official input, 50 Hz alignment with the spectrogram, batching, errors, NaN retry,
resume."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from gptsovits_train.audio.spectrogram import spectrogram
from gptsovits_train.config import AudioConfig, Config
from gptsovits_train.errors import GsvError
from gptsovits_train.features import (
    FeatureAlignmentError,
    HubertFeaturizer,
    HubertLoadError,
    align_to_spec,
    check_features,
    extract_features,
    hubert_frames,
    hubert_input,
    load_hubert,
    read_stamp,
)
from gptsovits_train.features.hubert import RANDOM_MARKER, resolve_device
from tests.features_helpers import build_tiny_hubert, lj_waves_32k, make_dataset


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_hubert(tmp_path_factory.mktemp("hubert") / "tiny")


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path):
    return load_hubert(tiny_dir)


@pytest.fixture(scope="module")
def lj() -> list[tuple[str, np.ndarray]]:
    return lj_waves_32k(4, max_seconds=3.0)


def _cfg(hubert: str | Path, **features) -> Config:
    cfg = Config()
    cfg.prepare.features.hubert = str(hubert)
    cfg.prepare.features.device = "cpu"
    for k, v in features.items():
        setattr(cfg.prepare.features, k, v)
    return cfg


# ---------------------------------------------------------------------------------------- numerics
def test_hubert_input_is_the_official_recipe(lj):
    """Official: librosa.resample((a/max|a| * 0.475 + 0.5 a) * 1145.14, 32000 -> 16000), default res_type."""
    raw = lj_waves_32k(1, max_seconds=2.0, mix=False)[0][1]
    peak = np.abs(raw).max()
    official_in = (raw / peak * (0.95 * 0.5 * 1145.14)) + (0.5 * 1145.14) * raw
    expected = librosa.resample(official_in, orig_sr=32000, target_sr=16000)
    ours = hubert_input(raw, apply_mix=True)
    assert ours.shape == expected.shape == (len(raw) // 2 + len(raw) % 2,)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-3)  # float32 rounding at peaks ~1e3
    # a clip that already holds the 5-wav32k mix (dataset wav) gets only the scale
    mixed = (raw / peak * 0.475 + 0.5 * raw).astype(np.float32)
    np.testing.assert_allclose(hubert_input(mixed, apply_mix=False), expected, rtol=0, atol=2e-3)
    mixed_peak = 1145.14 * (0.475 + 0.5 * peak)  # peaks near 1e3, not in [-1, 1]
    assert 0.9 * mixed_peak < np.abs(ours).max() < 1.1 * mixed_peak


def test_frame_formula_matches_the_model(tiny):
    model = tiny.model
    lengths = [400, 719, 720, 1039, 16000, 16001, 48321]
    want = model._get_feat_extract_output_lengths(torch.tensor(lengths)).tolist()
    assert [hubert_frames(n) for n in lengths] == want
    assert hubert_frames(399) == 0
    with torch.no_grad():
        out = model(torch.randn(1, 16001)).last_hidden_state
    assert out.shape == (1, hubert_frames(16001), 768)


@pytest.mark.parametrize("extra", [0, 100, 158, 159, 160, 500, 639])
def test_features_align_with_spectrogram_at_50hz(tiny, extra):
    """For every residue of L mod 640 the HuBERT frame count is spec.T or spec.T - 1 and aligns."""
    acfg = AudioConfig()
    n = 640 * 40 + extra  # 0.8 s + extra samples
    wave = (np.random.default_rng(extra).standard_normal(n) * 0.1).astype(np.float32)
    n_frames = spectrogram(torch.from_numpy(wave), acfg).shape[-1]
    assert n_frames == n // 640
    feats = HubertFeaturizer(tiny, "cpu")([hubert_input(wave, apply_mix=False)])[0]
    assert feats is not None and feats.shape[0] == 768
    diff = n_frames - feats.shape[1]
    assert diff == (1 if extra < 159 else 0)  # N16 = ceil(L/2); HuBERT needs 80 more samples per frame
    aligned = align_to_spec(feats.astype(np.float16), n_frames)
    assert aligned.shape == (768, n_frames) and aligned.dtype == np.float16
    np.testing.assert_array_equal(aligned[:, : feats.shape[1]], feats.astype(np.float16))
    if diff:
        np.testing.assert_array_equal(aligned[:, -1], aligned[:, -2])  # replicate pad


def test_align_rejects_other_differences():
    ssl = np.zeros((768, 10), np.float16)
    assert align_to_spec(ssl, 10) is ssl
    assert align_to_spec(ssl, 11).shape == (768, 11)
    for n in (8, 9, 12):  # ssl longer than the spectrogram, or short by more than one frame
        with pytest.raises(FeatureAlignmentError, match="frames"):
            align_to_spec(ssl, n)
    with pytest.raises(FeatureAlignmentError):
        align_to_spec(np.zeros((1, 768, 10), np.float16), 10)


def test_batched_equals_one_clip_at_a_time(tiny, lj):
    """Length-sorted padded batches give each clip what `model(clip)` gives alone (fp tolerance);
    naive zero padding through `model(batch)` does not (GroupNorm over time), which is why we don't."""
    waves = [hubert_input(w, apply_mix=False) for _, w in lj]
    assert len({len(w) for w in waves}) > 1
    batched = HubertFeaturizer(tiny, "cpu")(waves)
    worst = 0.0
    for w, got in zip(waves, batched, strict=True):
        with torch.no_grad():
            ref = tiny.model(torch.from_numpy(w)[None]).last_hidden_state[0].T.numpy()
        assert got is not None and got.shape == ref.shape
        worst = max(worst, float(np.abs(got - ref).max()))
    assert worst < 1e-4
    # the naive alternative changes the shorter clips far beyond that tolerance
    longest = max(len(w) for w in waves)
    padded = torch.zeros(len(waves), longest)
    for i, w in enumerate(waves):
        padded[i, : len(w)] = torch.from_numpy(w)
    with torch.no_grad():
        naive = tiny.model(padded).last_hidden_state
    short = int(np.argmin([len(w) for w in waves]))
    t = hubert_frames(len(waves[short]))
    with torch.no_grad():
        ref = tiny.model(torch.from_numpy(waves[short])[None]).last_hidden_state[0]
    assert float((naive[short, :t] - ref).abs().max()) > 100 * max(worst, 1e-6)


# ------------------------------------------------------------------------------------------ errors
def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(HubertLoadError, match=r"HuBERT folder not found.*download-pretrained"):
        load_hubert(tmp_path / "nope")


def test_file_instead_of_folder(tmp_path):
    f = tmp_path / "pytorch_model.bin"
    f.write_bytes(b"x")
    with pytest.raises(HubertLoadError, match="is a file"):
        load_hubert(f)


def test_folder_without_config(tmp_path):
    with pytest.raises(HubertLoadError, match=r"no config\.json"):
        load_hubert(tmp_path)


def test_folder_of_another_model(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2", "hidden_size": 768}))
    with pytest.raises(HubertLoadError, match="'wav2vec2' model, not HuBERT"):
        load_hubert(tmp_path)


def test_wrong_hidden_size(tmp_path):
    folder = build_tiny_hubert(tmp_path / "h64", hidden_size=64)
    with pytest.raises(HubertLoadError, match="hidden size is 64, expected 768"):
        load_hubert(folder)


def test_config_without_weights(tmp_path, tiny_dir):
    (tmp_path / "config.json").write_bytes((tiny_dir / "config.json").read_bytes())
    with pytest.raises(HubertLoadError, match="has no weights"):
        load_hubert(tmp_path)


def test_incomplete_weights_are_refused(tmp_path):
    folder = build_tiny_hubert(tmp_path / "legacy", legacy_bin=True)
    sd = torch.load(folder / "pytorch_model.bin", weights_only=True)
    torch.save({k: v for k, v in sd.items() if ".attention." not in k}, folder / "pytorch_model.bin")
    with pytest.raises(HubertLoadError, match="weights missing"):
        load_hubert(folder)


def test_legacy_weight_norm_names_load_exactly(tmp_path, tiny_dir):
    """chinese-hubert-base ships pytorch_model.bin with weight_g/weight_v names; they must load."""
    legacy = load_hubert(build_tiny_hubert(tmp_path / "legacy", legacy_bin=True))
    modern = load_hubert(tiny_dir)
    x = torch.randn(1, 8000)
    with torch.no_grad():
        a = legacy.model(x).last_hidden_state
        b = modern.model(x).last_hidden_state
    assert torch.equal(a, b)


def test_cuda_without_gpu_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(GsvError, match="no CUDA device"):
        resolve_device("cuda")


# --------------------------------------------------------------------------------------- NaN retry
def _fake_fp16(feat: HubertFeaturizer, monkeypatch, nan_in_fp32: bool):
    """Pretend the featurizer runs fp16 and that fp16 gives NaN for the second clip of a batch."""
    real = feat.forward
    calls: list[torch.dtype] = []

    def forward(waves, dtype):
        calls.append(dtype)
        out = real(waves, torch.float32)
        if dtype == torch.float16 and len(out) > 1:
            out[1][:] = float("nan")
        if dtype == torch.float32 and nan_in_fp32:
            out[0][0, 0] = float("nan")
        return out

    monkeypatch.setattr(feat, "forward", forward)
    feat.half, feat.dtype = True, torch.float16
    return calls


def test_nan_fp16_output_is_retried_in_fp32(tiny, lj, monkeypatch):
    waves = [hubert_input(w, apply_mix=False) for _, w in lj[:3]]
    reference = HubertFeaturizer(tiny, "cpu")(waves)
    feat = HubertFeaturizer(tiny, "cpu")
    calls = _fake_fp16(feat, monkeypatch, nan_in_fp32=False)
    out = feat(waves)
    assert calls == [torch.float16, torch.float32]
    assert feat.n_retried == 1 and feat.n_failed == 0
    for got, ref in zip(out, reference, strict=True):
        assert got is not None and ref is not None
        np.testing.assert_allclose(got, ref, atol=1e-5)


def test_nan_in_fp32_too_drops_the_clip(tiny, lj, monkeypatch):
    waves = [hubert_input(w, apply_mix=False) for _, w in lj[:3]]
    feat = HubertFeaturizer(tiny, "cpu")
    _fake_fp16(feat, monkeypatch, nan_in_fp32=True)
    out = feat(waves)
    assert out[1] is None and out[0] is not None and out[2] is not None
    assert feat.n_failed == 1


# ------------------------------------------------------------------------------------------- stage
def test_stage_writes_aligned_float16_features(tmp_path, tiny_dir, lj):
    layout, clips = make_dataset(tmp_path / "ds", lj)
    res = extract_features(layout, clips, _cfg(tiny_dir, batch_size=3))
    assert [c.id for c in res.clips] == [c.id for c in clips] and not res.skipped and not res.warnings
    loaded = load_hubert(tiny_dir)
    for clip in res.clips:
        assert clip.ssl == f"ssl/{clip.id}.npy"
        arr = np.load(layout.root / clip.ssl, allow_pickle=False)
        assert arr.dtype == np.float16 and arr.shape == (768, clip.n_frames)
        spec = np.load(layout.root / clip.spec, allow_pickle=False)
        assert arr.shape[1] == spec.shape[1]
        # the stored features are the model's output for the official input of the stored wav
        from gptsovits_train.audio.io import read_wav_pcm16

        wave, _ = read_wav_pcm16(layout.root / clip.path)
        with torch.no_grad():
            ref = loaded.model(torch.from_numpy(hubert_input(wave, apply_mix=False))[None])
        ref_np = align_to_spec(ref.last_hidden_state[0].T.numpy(), clip.n_frames)
        np.testing.assert_allclose(arr.astype(np.float32), ref_np, atol=2e-2, rtol=1e-2)
    check_features(layout, res.clips)
    stamp = read_stamp(layout)
    assert stamp is not None and not stamp.random and stamp.model == str(tiny_dir.absolute())


def test_resume_skips_existing_files(tmp_path, tiny_dir, lj, monkeypatch):
    layout, clips = make_dataset(tmp_path / "ds", lj[:3])
    cfg = _cfg(tiny_dir)
    extract_features(layout, clips, cfg)
    mtimes = {c.id: layout.ssl(c.id).stat().st_mtime_ns for c in clips}

    import gptsovits_train.features.extract as ex

    def no_model(*a, **k):
        raise AssertionError("the model must not be loaded when every clip has features")

    monkeypatch.setattr(ex, "load_hubert", no_model)
    res = extract_features(layout, clips, cfg)
    assert len(res.clips) == 3 and all(c.ssl for c in res.clips)
    monkeypatch.undo()

    # one missing and one truncated file: only those two are computed again
    layout.ssl(clips[0].id).unlink()
    np.save(layout.ssl(clips[1].id), np.zeros((768, 3), np.float16))
    seen: list[int] = []
    real_call = HubertFeaturizer.__call__

    def spy(self, waves):
        seen.append(len(waves))
        return real_call(self, waves)

    monkeypatch.setattr(HubertFeaturizer, "__call__", spy)
    res = extract_features(layout, clips, cfg)
    assert sum(seen) == 2
    assert layout.ssl(clips[2].id).stat().st_mtime_ns == mtimes[clips[2].id]
    check_features(layout, res.clips)


def test_another_model_recomputes_everything(tmp_path, tiny_dir, lj):
    layout, clips = make_dataset(tmp_path / "ds", lj[:2])
    extract_features(layout, clips, _cfg(tiny_dir))
    before = np.load(layout.ssl(clips[0].id))
    other = build_tiny_hubert(tmp_path / "other", seed=1)
    extract_features(layout, clips, _cfg(other))
    after = np.load(layout.ssl(clips[0].id))
    assert not np.array_equal(before, after)
    stamp = read_stamp(layout)
    assert stamp is not None and stamp.model == str(other.absolute())


def test_bad_clip_is_skipped_not_fatal(tmp_path, tiny_dir, lj):
    layout, clips = make_dataset(tmp_path / "ds", lj[:3])
    clips[1].n_frames += 5  # manifest disagrees with the wav
    layout.wav(clips[2].id).write_bytes(b"RIFF garbage")
    res = extract_features(layout, clips, _cfg(tiny_dir))
    assert [c.id for c in res.clips] == [clips[0].id]
    reasons = {s.source: s.reason for s in res.skipped}
    assert "manifest says" in reasons[clips[1].id]
    assert "cannot read" in reasons[clips[2].id]
    assert all(s.stage == "features" for s in res.skipped)


def test_random_tiny_builds_once_and_says_so(tmp_path, lj):
    layout, clips = make_dataset(tmp_path / "ds", lj[:2])
    res = extract_features(layout, clips, _cfg("random-tiny"))
    assert len(res.clips) == 2
    assert any("does not make a usable voice" in w.message for w in res.warnings)
    folder = layout.random_hubert_dir
    assert (folder / RANDOM_MARKER).is_file()
    stamp = read_stamp(layout)
    assert stamp is not None and stamp.random
    built = (folder / "model.safetensors").stat().st_mtime_ns
    first = np.load(layout.ssl(clips[0].id))
    # a second dataset builds the same seeded model: identical features
    layout2, clips2 = make_dataset(tmp_path / "ds2", lj[:1])
    extract_features(layout2, clips2, _cfg("random-tiny"))
    np.testing.assert_array_equal(np.load(layout2.ssl(clips2[0].id)), first)
    # and the first dataset reuses its model
    layout.ssl(clips[0].id).unlink()
    extract_features(layout, clips, _cfg("random-tiny"))
    assert (folder / "model.safetensors").stat().st_mtime_ns == built
    assert load_hubert(folder).random


def test_stage_without_model_configured(tmp_path, lj):
    layout, clips = make_dataset(tmp_path / "ds", lj[:1])
    cfg = Config()
    with pytest.raises(GsvError, match="no HuBERT model"):
        extract_features(layout, clips, cfg)


def test_check_features_names_clips_and_the_fix(tmp_path, tiny_dir, lj):
    layout, clips = make_dataset(tmp_path / "ds", lj[:4])
    res = extract_features(layout, clips, _cfg(tiny_dir))
    clips = res.clips
    check_features(layout, clips)
    clips[0].ssl = None
    layout.ssl(clips[1].id).unlink()
    np.save(layout.ssl(clips[2].id), np.zeros((768, clips[2].n_frames + 2), np.float16))
    with pytest.raises(GsvError) as err:
        check_features(layout, clips)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("3 of 4 clips")
    assert f"{clips[0].id}: no features" in msg
    assert f"{clips[1].id}: no features file" in msg
    assert f"{clips[2].id}: features have {clips[2].n_frames + 2} frames, the spectrogram has" in msg
    assert "gsv-train prepare" in msg and "--hubert" in msg
    assert clips[3].id not in msg


def test_stage_drops_a_clip_that_stays_nan(tmp_path, tiny_dir, lj, monkeypatch):
    distinct = [(cid, w[: int(32000 * (1.5 + 0.4 * i))]) for i, (cid, w) in enumerate(lj[:3])]
    layout, clips = make_dataset(tmp_path / "ds", distinct)
    real_call = HubertFeaturizer.__call__

    def flaky(self, waves):
        out = real_call(self, waves)
        return [None if len(w) == max(len(x) for x in waves) else o for w, o in zip(waves, out, strict=True)]

    monkeypatch.setattr(HubertFeaturizer, "__call__", flaky)
    res = extract_features(layout, clips, _cfg(tiny_dir, batch_size=8))
    longest = max(clips, key=lambda c: c.n_samples)
    assert [s.source for s in res.skipped] == [longest.id]
    assert res.skipped[0].reason == "HuBERT output is NaN/Inf even in fp32"
    assert not layout.ssl(longest.id).exists() and len(res.clips) == 2


@pytest.mark.slow
def test_base_architecture_batched_equals_single(lj):
    """The chinese-hubert-base architecture (12 layers, conv 512, pos-conv 128; random weights)."""
    from transformers import HubertConfig, HubertModel

    from gptsovits_train.features.hubert import LoadedHubert

    torch.manual_seed(0)
    model = HubertModel(HubertConfig()).eval()
    loaded = LoadedHubert(model=model, path=Path("base"), random=True, hidden_size=768)
    waves = [
        hubert_input(w[: int(32000 * s)], apply_mix=False) for (_, w), s in zip(lj, (1.3, 2.2), strict=False)
    ]
    got = HubertFeaturizer(loaded, "cpu")(waves)
    for w, g in zip(waves, got, strict=True):
        with torch.no_grad():
            ref = model(torch.from_numpy(w)[None]).last_hidden_state[0].T.numpy()
        assert g is not None and g.shape == ref.shape == (768, hubert_frames(len(w)))
        np.testing.assert_allclose(g, ref, atol=1e-4, rtol=0)
