"""Semantic codes (GPT stage): parity with the official `extract_latent` fixture, loading, the stage."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from gptsovits_train.config import Config
from gptsovits_train.data.manifest import Clip
from gptsovits_train.errors import GsvError
from gptsovits_train.features.hubert import expected_frames
from gptsovits_train.features.semantic import (
    RANDOM_SEMANTIC_NOTICE,
    SemanticModelError,
    extract_semantic,
    load_semantic_model,
    random_semantic_model,
    semantic_model_from_state,
)
from gptsovits_train.fileio import atomic_save_npy
from gptsovits_train.layout import DatasetLayout

CLIPS = ("clip0.wav", "clip1.wav")


@pytest.fixture(scope="module")
def fixture(reference_dir: Path) -> dict[str, np.ndarray]:
    with np.load(reference_dir / "semantic_fixture_v2.npz") as d:
        return {k: d[k] for k in d.files}


def fixture_state(fx: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The fixture's fp16 weights under their official s2G names (as an exported s2G stores them)."""
    return {
        k.removeprefix("weights/"): torch.from_numpy(v) for k, v in fx.items() if k.startswith("weights/")
    }


# ------------------------------------------------------------------------------------------ parity
@pytest.mark.parametrize("clip", CLIPS)
def test_codes_and_projection_match_the_official_fixture(fixture, clip):
    """fp32 from the fp16 weights and fp16 ssl, as 3-get-semantic.py on a CPU: codes exact; ssl_proj within
    the fixture's 1e-5 (measured 0.0: the same conv on the same values)."""
    model = semantic_model_from_state(fixture_state(fixture))
    ssl = fixture[f"{clip}/ssl"].astype(np.float32)
    proj = model.project(torch.from_numpy(ssl)[None])[0].numpy()
    np.testing.assert_allclose(proj, fixture[f"{clip}/ssl_proj"], rtol=0, atol=1e-5)
    codes = model.codes([ssl])[0]
    assert codes.dtype == np.int64
    assert len(codes) == ssl.shape[1] // 2  # T25 = T_hubert // 2 (clip0 has an odd T)
    np.testing.assert_array_equal(codes, fixture[f"{clip}/codes"])


def test_batched_codes_equal_one_clip_at_a_time(fixture):
    model = semantic_model_from_state(fixture_state(fixture))
    feats = [fixture[f"{c}/ssl"] for c in CLIPS]  # fp16 arrays, different (odd/even) lengths
    batched = model.codes(feats)
    for clip, got in zip(CLIPS, batched, strict=True):
        np.testing.assert_array_equal(got, fixture[f"{clip}/codes"])
    single = [model.codes([f])[0] for f in reversed(feats)]
    np.testing.assert_array_equal(single[0], batched[1])


def test_half_precision_reproduces_the_official_fp16_codes(fixture):
    """The official half-GPU path (model and input fp16); the fixture made it on a CPU, so we can too."""
    model = semantic_model_from_state(fixture_state(fixture)).half()
    for clip in CLIPS:
        got = model.codes([fixture[f"{clip}/ssl"]])[0]
        np.testing.assert_array_equal(got, fixture[f"{clip}/codes_fp16_model"])
        assert int((got != fixture[f"{clip}/codes"]).sum()) == 1  # what the facts report


def test_digest_ignores_storage_precision(fixture):
    state = fixture_state(fixture)
    a = semantic_model_from_state(state)
    b = semantic_model_from_state({k: v.float() for k, v in state.items()})
    assert a.digest() == b.digest()
    state2 = dict(state)
    state2["ssl_proj.bias"] = state["ssl_proj.bias"] + 1
    assert semantic_model_from_state(state2).digest() != a.digest()


# ----------------------------------------------------------------------------------------- loading
def test_state_without_quantizer_is_refused(fixture):
    state = fixture_state(fixture)
    del state["quantizer.vq.layers.0._codebook.embed"]
    with pytest.raises(SemanticModelError, match="no ssl_proj/quantizer"):
        semantic_model_from_state(state)


def test_uninitialised_codebook_is_refused(fixture):
    state = fixture_state(fixture)
    state["quantizer.vq.layers.0._codebook.inited"] = torch.zeros(1)
    with pytest.raises(SemanticModelError, match="never initialised"):
        semantic_model_from_state(state)


def test_mismatched_codebook_width_is_refused(fixture):
    state = fixture_state(fixture)
    state["quantizer.vq.layers.0._codebook.embed"] = torch.zeros(16, 32)
    with pytest.raises(SemanticModelError, match="does not fit"):
        semantic_model_from_state(state)


TINY_G = dict(
    hidden_channels=16,
    filter_channels=32,
    inter_channels=8,
    n_layers=1,
    upsample_initial_channel=16,
    upsample_rates=[8, 8, 10],
    upsample_kernel_sizes=[16, 16, 20],
    gin_channels=16,
)


def _tiny_generator_state() -> dict[str, torch.Tensor]:
    """A tiny SoVITS generator (full-size ssl_proj 768 and codebook 1024x768), random codebook."""
    from gptsovits_train.models import build_generator

    return dict(build_generator("v2", random_codebook=True, seed=3, **TINY_G).state_dict())


def test_load_from_a_pretrained_style_file_gives_the_generators_codes(tmp_path):
    state = _tiny_generator_state()
    torch.save({"weight": state}, tmp_path / "s2G.pth")  # the official pretrained layout
    model = load_semantic_model(tmp_path / "s2G.pth")
    from gptsovits_train.models import build_generator

    G = build_generator("v2", **TINY_G)
    G.load_state_dict(state)
    ssl = torch.randn(2, 768, 31, generator=torch.Generator().manual_seed(0))
    want = G.extract_latent(ssl)[0].numpy()  # the generator's own path: (1, B, T//2) -> (B, T//2)
    got = model.codes([ssl[0], ssl[1]])
    np.testing.assert_array_equal(np.stack(got), want)


def test_discriminator_file_is_refused(tmp_path):
    from gptsovits_train.models import build_discriminator

    torch.save({"weight": build_discriminator("v2", periods=[2]).state_dict()}, tmp_path / "s2D.pth")
    with pytest.raises(GsvError, match="discriminator"):
        load_semantic_model(tmp_path / "s2D.pth")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SemanticModelError, match="not found"):
        load_semantic_model(tmp_path / "nope.pth")


# ------------------------------------------------------------------------------------------- stage
def _dataset(root: Path, lengths: list[int], seed: int = 0) -> tuple[DatasetLayout, list[Clip]]:
    """Clips with `ssl/<id>.npy` aligned as the feature stage writes them (a frame longer when
    n_samples mod 640 < 159); no audio is needed by the semantic stage."""
    layout = DatasetLayout(root)
    rng = np.random.default_rng(seed)
    clips = []
    for i, n in enumerate(lengths):
        cid = f"c{i}"
        n_frames = n // 640
        t = expected_frames(n)
        ssl = rng.standard_normal((768, t)).astype(np.float16)
        if n_frames == t + 1:
            ssl = np.concatenate([ssl, ssl[:, -1:]], axis=1)
        assert ssl.shape[1] == n_frames
        atomic_save_npy(layout.ssl(cid), ssl)
        clips.append(
            Clip(
                cid,
                f"wavs/{cid}.wav",
                "/src",
                0.0,
                n / 32000,
                n / 32000,
                "t",
                "en",
                "s",
                n_samples=n,
                n_frames=n_frames,
                ssl=layout.relative(layout.ssl(cid)),
            )
        )
    return layout, clips


def _cfg(model: str) -> Config:
    cfg = Config()
    cfg.prepare.semantic = cfg.prepare.semantic.model_copy(
        update={"model": model, "device": "cpu", "batch_size": 2}
    )
    return cfg


@pytest.fixture()
def s2g_file(tmp_path, fixture) -> Path:
    """A generator file holding the fixture's ssl_proj + codebook (fp16, as an official export)."""
    path = tmp_path / "s2G.pth"
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in _tiny_generator_state().items()}
    state.update(fixture_state(fixture))
    torch.save({"weight": state}, path)
    return path


def test_stage_writes_codes_of_the_unpadded_features(tmp_path, s2g_file, fixture):
    # 64000 % 640 == 0 (< 159): the stored features carry one padding frame; 64500: none
    layout, clips = _dataset(tmp_path / "ds", [64000, 64500, 45200])
    result = extract_semantic(layout, clips, _cfg(str(s2g_file)))
    assert not result.skipped and not result.warnings
    model = semantic_model_from_state(fixture_state(fixture))
    for clip in result.clips:
        assert clip.semantic == f"semantic/{clip.id}.npy"
        codes = np.load(layout.root / clip.semantic)
        t = expected_frames(clip.n_samples)
        assert len(codes) == t // 2
        ssl = np.load(layout.ssl(clip.id))[:, :t]
        np.testing.assert_array_equal(codes, model.codes([ssl])[0])
    assert len(np.load(layout.semantic("c0"))) == expected_frames(64000) // 2 == 49  # 99 frames -> 49


def test_stage_resumes_and_recomputes_when_weights_change(tmp_path, s2g_file, fixture):
    layout, clips = _dataset(tmp_path / "ds", [64000, 40000])
    cfg = _cfg(str(s2g_file))
    extract_semantic(layout, clips, cfg)
    before = {c.id: layout.semantic(c.id).stat().st_mtime_ns for c in clips}
    for c in clips:
        c.semantic = None
    again = extract_semantic(layout, clips, cfg)
    assert {c.id: layout.semantic(c.id).stat().st_mtime_ns for c in clips} == before
    assert all(c.semantic for c in again.clips)
    # a features file rewritten after the codes: that clip alone is recomputed
    ssl = np.load(layout.ssl("c1"))
    atomic_save_npy(layout.ssl("c1"), ssl)
    os.utime(layout.ssl("c1"), ns=(before["c1"] + 10**9, before["c1"] + 10**9))
    extract_semantic(layout, clips, cfg)
    assert layout.semantic("c0").stat().st_mtime_ns == before["c0"]
    assert layout.semantic("c1").stat().st_mtime_ns != before["c1"]
    # other weights: every file is made again, with the new codes
    state = torch.load(s2g_file, weights_only=True)["weight"]
    state["quantizer.vq.layers.0._codebook.embed"] = state["quantizer.vq.layers.0._codebook.embed"].flip(0)
    torch.save({"weight": state}, s2g_file)
    extract_semantic(layout, clips, cfg)
    flipped = semantic_model_from_state(state)
    t = expected_frames(64000)
    np.testing.assert_array_equal(
        np.load(layout.semantic("c0")), flipped.codes([np.load(layout.ssl("c0"))[:, :t]])[0]
    )


def test_clips_with_bad_features_are_skipped_with_a_reason(tmp_path, s2g_file):
    layout, clips = _dataset(tmp_path / "ds", [64000, 40000, 40000])
    clips[1].ssl = None
    atomic_save_npy(layout.ssl("c2"), np.zeros((768, 10), dtype=np.float16))
    result = extract_semantic(layout, clips, _cfg(str(s2g_file)))
    assert [c.id for c in result.clips] == ["c0"]
    reasons = {s.source: s.reason for s in result.skipped}
    assert "no HuBERT features" in reasons["c1"]
    assert "10 frames" in reasons["c2"]
    assert all(s.stage == "semantic" for s in result.skipped)


def test_random_tiny_warns_and_is_deterministic(tmp_path):
    layout, clips = _dataset(tmp_path / "ds", [40000])
    result = extract_semantic(layout, clips, _cfg("random-tiny"))
    assert [w.message for w in result.warnings] == [RANDOM_SEMANTIC_NOTICE]
    assert "pipeline" in RANDOM_SEMANTIC_NOTICE
    a = random_semantic_model()
    t = expected_frames(40000)
    np.testing.assert_array_equal(
        np.load(layout.semantic("c0")), a.codes([np.load(layout.ssl("c0"))[:, :t]])[0]
    )


def test_no_model_anywhere_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GSV_TRAIN_PRETRAINED", str(tmp_path / "empty"))
    layout, clips = _dataset(tmp_path / "ds", [40000])
    cfg = Config()
    with pytest.raises(GsvError, match=r"prepare\.semantic\.model"):
        extract_semantic(layout, clips, cfg)


def test_an_exported_model_gives_the_pretrained_codes(tmp_path, s2g_file):
    """An official-format export (fp16, no enc_q, config, info) of a fine-tuned model holds the same frozen
    ssl_proj/quantizer, so it gives the same digest and codes as the pretrained file."""
    state = torch.load(s2g_file, weights_only=True)["weight"]
    export = {k: v for k, v in state.items() if not k.startswith("enc_q.")}
    export["dec.conv_pre.weight"] = export["dec.conv_pre.weight"] + 1  # "fine-tuned" elsewhere
    path = tmp_path / "voice_e8_s100.pth"
    torch.save(
        {"weight": export, "config": {"model": {"version": "v2"}}, "info": "8epoch_100iteration"}, path
    )
    from gptsovits_train.checkpoints import read_weights

    assert read_weights(path).kind == "official-export"
    pretrained, exported = load_semantic_model(s2g_file), load_semantic_model(path)
    assert exported.digest() == pretrained.digest()
    ssl = np.random.default_rng(0).standard_normal((768, 41)).astype(np.float32)
    np.testing.assert_array_equal(exported.codes([ssl])[0], pretrained.codes([ssl])[0])
