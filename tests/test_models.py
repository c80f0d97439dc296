"""SoVITS generator / discriminator: official state-dict layout, shapes, frozen parts, inference."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from gptsovits_train.audio.spectrogram import mel_spectrogram, spectrogram
from gptsovits_train.config import AudioConfig, Config, ConfigError
from gptsovits_train.models import (
    GeneratorOutput,
    build_discriminator,
    build_generator,
    build_generator_from_config,
    discriminator_periods,
    official_model_config,
)
from gptsovits_train.models.quantizer import CodebookNotInitializedError

# A tiny v2 generator through the same code: every key name stays official, only sizes shrink.
TINY: dict[str, Any] = {
    "hidden_channels": 16,
    "filter_channels": 32,
    "inter_channels": 8,
    "n_layers": 2,
    "n_heads": 2,
    "gin_channels": 16,
    "upsample_initial_channel": 32,
    "upsample_rates": [8, 8],
    "upsample_kernel_sizes": [16, 16],
    "resblock_kernel_sizes": [3, 5],
    "resblock_dilation_sizes": [[1, 3], [1, 3]],
    "ssl_dim": 32,
    "codebook_size": 64,
    "hop_length": 64,
    "segment_size": 512,  # 8 frames
}
TINY_HOP = 64
FROZEN_PREFIXES = ("ssl_proj.",)


def tiny_generator(version: str = "v2", seed: int = 0, **extra: Any) -> Any:
    return build_generator(version, random_codebook=True, seed=seed, **{**TINY, **extra})


def tiny_batch(seed: int = 0, t: int = 20, lengths: tuple[int, int] = (20, 15)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "ssl": torch.randn(2, TINY["ssl_dim"], t, generator=g),
        "spec": torch.rand(2, 1025, t, generator=g),
        "spec_lengths": torch.tensor(lengths),
        "text": torch.randint(0, 732, (2, 7), generator=g),
        "text_lengths": torch.tensor([7, 5]),
    }


def load_manifest(reference_dir: Path, name: str) -> dict[str, Any]:
    return json.loads((reference_dir / name).read_text())


def assert_matches_manifest(model: nn.Module, manifest: dict[str, Any], frozen: tuple[str, ...] = ()) -> None:
    ref = manifest["state_dict"]
    sd = model.state_dict()
    assert list(sd) == list(ref), "state-dict keys (and their order) differ from the official manifest"
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    for key, info in ref.items():
        assert list(sd[key].shape) == info["shape"], key
        assert str(sd[key].dtype).removeprefix("torch.") == info["dtype"], key
        if info["kind"] == "param":
            assert key in params, f"{key} should be a parameter"
            expected_grad = info["requires_grad"] and not key.startswith(frozen)
            assert params[key].requires_grad == expected_grad, key
        else:
            assert info["kind"] == "buffer"
            assert key in buffers, f"{key} should be a buffer"
    assert sum(p.numel() for p in params.values()) == manifest["summary"]["n_parameters"]
    assert sum(b.numel() for b in buffers.values()) == manifest["summary"]["n_buffer_elements"]


# ------------------------------------------------------------------------------------ manifests
@pytest.fixture(scope="module")
def full_v2() -> Any:
    return build_generator("v2", random_codebook=True, seed=1234)


def test_v2_generator_state_dict_matches_official(full_v2: Any, reference_dir: Path) -> None:
    manifest = load_manifest(reference_dir, "sovits_v2_G_state.json")
    assert manifest["summary"]["n_parameters"] == 51_310_080
    assert len(manifest["state_dict"]) == 776
    assert_matches_manifest(full_v2, manifest, frozen=FROZEN_PREFIXES)


def test_parameter_groups_match_official_optimizer_groups(full_v2: Any, reference_dir: Path) -> None:
    summary = load_manifest(reference_dir, "sovits_v2_G_state.json")["summary"]
    official = summary["param_elements_by_optim_group"]
    groups = {k: sum(p.numel() for p in v) for k, v in full_v2.parameter_groups().items()}
    frozen = sum(p.numel() for p in full_v2.ssl_proj.parameters())
    assert frozen == 1_180_416
    assert groups["base"] == official["base"] - frozen  # ssl_proj is frozen here, never updated officially
    for name in ("encoder_text", "text_embedding", "mrte"):
        assert groups[name] == official[f"text_low_lr:{name}"]


@pytest.mark.slow
@pytest.mark.parametrize("version", ["v1", "v2Pro", "v2ProPlus"])
def test_other_generator_versions_match_official(version: str, reference_dir: Path) -> None:
    manifest = load_manifest(reference_dir, f"sovits_{version}_G_state.json")
    model = build_generator(version)
    assert_matches_manifest(model, manifest, frozen=FROZEN_PREFIXES)
    # same configuration as the official config file of that version
    official = manifest["hps.model"]
    ours = official_model_config(version).model_dump()
    assert {k: ours[k] for k in official if k in ours} == {k: official[k] for k in official if k in ours}


@pytest.mark.parametrize("version", ["v2", "v2Pro"])
def test_discriminator_state_dict_matches_official(version: str, reference_dir: Path) -> None:
    manifest = load_manifest(reference_dir, f"sovits_{version}_D_state.json")
    model = build_discriminator(version)
    assert_matches_manifest(model, manifest)
    expected = (2, 3, 5, 7, 11) if version == "v2" else (2, 3, 5, 7, 11, 17, 23)
    assert discriminator_periods(version) == expected
    assert [d.period for d in model.discriminators[1:]] == list(expected)


def test_codebook_buffers_start_uninitialised_like_official() -> None:
    g = build_generator("v2", **TINY)
    cb = g.quantizer.vq.layers[0]._codebook
    assert cb.inited.item() == 0 and not g.quantizer.is_initialized()
    with pytest.raises(CodebookNotInitializedError, match="initialize_random_"):
        g.extract_latent(torch.randn(1, TINY["ssl_dim"], 4))
    g.quantizer.initialize_random_(torch.Generator().manual_seed(0))
    assert cb.inited.item() == 1
    assert torch.equal(cb.embed, cb.embed_avg) and cb.embed.abs().sum() > 0


def test_config_path_builds_the_same_structure() -> None:
    cfg = Config()
    a = build_generator_from_config(cfg.model, cfg.audio)
    b = build_generator("v2")
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_dropout_probabilities_are_official() -> None:
    def dropouts(model: nn.Module) -> dict[str, float]:
        return {name: m.p for name, m in model.named_modules() if isinstance(m, nn.Dropout)}

    v2 = dropouts(build_generator("v2", **TINY))
    pro = dropouts(build_generator("v2Pro", **{**TINY, "gin_channels": 16}))
    for drops, expected in ((v2, 0.1), (pro, 0.0)):
        enc = {k: p for k, p in drops.items() if k.startswith("enc_p.encoder")}
        assert enc and all(p == expected for p in enc.values())
        ref = {k: p for k, p in drops.items() if k.startswith("ref_enc")}
        assert ref and all(p == 0.1 for p in ref.values())  # the style encoder always uses 0.1


def test_invalid_configurations_are_rejected() -> None:
    with pytest.raises(ConfigError, match="hop_length"):
        build_generator("v2", upsample_rates=[10, 8, 2, 2])
    with pytest.raises(ConfigError, match="freeze_quantizer"):
        build_generator("v2", freeze_quantizer=False)
    with pytest.raises(TypeError, match="hidden_chanels"):
        build_generator("v2", hidden_chanels=16)
    with pytest.raises(ConfigError, match="unknown SoVITS version"):
        build_generator("v3")


# ------------------------------------------------------------------------------- full-size forward
@pytest.mark.slow
def test_full_size_v2_forward_shapes_and_gradients(full_v2: Any, reference_dir: Path) -> None:
    """The official measurement batch: 2 clips of 150/135 frames padded to 152, text 40/33."""
    ref = load_manifest(reference_dir, "sovits_v2_forward_shapes.json")
    inp = ref["batch_inputs"]
    g = torch.Generator().manual_seed(0)
    ssl = torch.randn(*inp["ssl"]["shape"], generator=g)
    spec = torch.rand(*inp["spec"]["shape"], generator=g)
    spec_lengths = torch.tensor(inp["spec_lengths"]["values"])
    text = torch.randint(0, 732, tuple(inp["text"]["shape"]), generator=g)
    text_lengths = torch.tensor(inp["text_lengths"]["values"])

    full_v2.train()
    out = full_v2(ssl, spec, spec_lengths, text, text_lengths)
    assert isinstance(out, GeneratorOutput)
    outputs = ref["train_forward_outputs"]
    got = {
        "0:y_hat": out.y_hat,
        "1:kl_ssl(commit_loss)": out.kl_ssl,
        "2:ids_slice": out.ids_slice,
        "3:x_mask(=y_mask)": out.x_mask,
        "4:z_mask(=y_mask)": out.z_mask,
        "5:z": out.z,
        "5:z_p": out.z_p,
        "5:m_p": out.m_p,
        "5:logs_p": out.logs_p,
        "5:m_q": out.m_q,
        "5:logs_q": out.logs_q,
        "6:stats_ssl(quantized, upsampled)": out.stats_ssl,
    }
    assert set(got) == set(outputs)
    for name, tensor in got.items():
        assert list(tensor.shape) == outputs[name]["shape"], name
        assert str(tensor.dtype) == outputs[name]["dtype"], name
    assert out.kl_ssl.item() == 0.0
    assert all(0 <= int(s) <= int(n) - 32 for s, n in zip(out.ids_slice, spec_lengths, strict=True))

    loss = out.y_hat.abs().mean() + (out.z_p - out.m_p).pow(2).mean() + out.logs_q.mean()
    full_v2.zero_grad(set_to_none=True)
    loss.backward()
    no_grad = sorted(n for n, p in full_v2.named_parameters() if p.grad is None)
    assert no_grad == sorted(ref["G_params_without_grad_after_backward"])

    # discriminator score shapes for the 20480-sample segment (facts §5)
    d = build_discriminator("v2")
    y = torch.randn(2, 1, 20480, generator=g)
    real, fake, fmap_r, fmap_g = d(y, out.y_hat.detach())
    shapes = [tuple(s.shape) for s in real]
    assert shapes == [(2, 80), (2, 254), (2, 255), (2, 255), (2, 259), (2, 253)]
    assert [tuple(s.shape) for s in fake] == shapes
    assert [len(f) for f in fmap_r] == [7, 6, 6, 6, 6, 6] == [len(f) for f in fmap_g]


# ------------------------------------------------------------------------------ tiny forward/backward
def test_tiny_forward_backward_all_trainable_parts_get_gradients() -> None:
    model = tiny_generator().train()
    disc = build_discriminator("v2")
    batch = tiny_batch()
    out = model(**batch)
    seg = TINY["segment_size"]
    assert out.y_hat.shape == (2, 1, seg)
    assert out.z.shape == (2, TINY["inter_channels"], 20)
    assert out.stats_ssl.shape == (2, TINY["ssl_dim"], 20)
    _real, fake, _fr, _fg = disc(torch.randn(2, 1, seg), out.y_hat)
    loss = sum(((1 - f) ** 2).mean() for f in fake) + (out.z_p - out.m_p).pow(2).mean() + out.logs_q.mean()
    loss.backward()
    for name, p in model.named_parameters():
        if name.startswith(FROZEN_PREFIXES):
            assert p.grad is None, name
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_frozen_parts_unchanged_by_an_optimizer_step() -> None:
    model = tiny_generator().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    out = model(**tiny_batch())
    (out.y_hat.pow(2).mean() + (out.z_p - out.m_p).pow(2).mean()).backward()
    opt.step()
    after = model.state_dict()
    frozen = [k for k in before if k.startswith(("ssl_proj.", "quantizer."))]
    assert len(frozen) == 6  # ssl_proj weight/bias + 4 codebook buffers
    for k in frozen:
        assert torch.equal(before[k], after[k]), k
    changed = [k for k in before if k not in frozen and not torch.equal(before[k], after[k])]
    assert "dec.conv_pre.weight" in changed and "enc_p.ssl_proj.weight" in changed
    assert "ref_enc.fc.fc.weight" in changed and "enc_q.pre.weight" in changed


def test_pro_version_needs_and_uses_the_speaker_embedding() -> None:
    model = tiny_generator("v2Pro").eval()
    batch = tiny_batch()
    with pytest.raises(ValueError, match="sv_emb"):
        model(**batch)
    g = torch.Generator().manual_seed(3)
    sv = torch.randn(2, 20480, generator=g)
    a = model(**batch, sv_emb=sv, generator=torch.Generator().manual_seed(0))
    b = model(**batch, sv_emb=sv * 2, generator=torch.Generator().manual_seed(0))
    assert a.y_hat.shape == (2, 1, TINY["segment_size"])
    assert not torch.allclose(a.m_p, b.m_p)


def test_forward_rejects_odd_or_mismatched_frames() -> None:
    model = tiny_generator()
    batch = tiny_batch(t=21, lengths=(21, 15))
    with pytest.raises(ValueError, match="even"):
        model(**batch)
    batch = tiny_batch()
    batch["ssl"] = batch["ssl"][:, :, :18]
    with pytest.raises(ValueError, match="same length"):
        model(**batch)


def test_padding_does_not_leak_into_valid_frames() -> None:
    """Masks of enc_p / enc_q: a padded item gives the same stats as the same clip alone (eval mode).

    (The reference encoder is not part of this check: like the official MelStyleEncoder it masks only
    after its temporal convs, so padded frames slightly change `ge`; the same `ge` is used here.)
    """
    model = tiny_generator().eval()
    batch = tiny_batch(lengths=(20, 14))
    ge = torch.randn(2, TINY["gin_channels"], 1, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        q = model._upsample_codes_rate(model.quantizer(model.project_ssl(batch["ssl"]))[0])
        _, m_p, logs_p, _ = model.enc_p(q, batch["spec_lengths"], batch["text"], batch["text_lengths"], ge)
        _, m_p1, logs_p1, _ = model.enc_p(
            q[1:, :, :14], batch["spec_lengths"][1:], batch["text"][1:, :5], batch["text_lengths"][1:], ge[1:]
        )
        _, m_q, logs_q, _ = model.enc_q(batch["spec"], batch["spec_lengths"], g=ge)
        _, m_q1, logs_q1, _ = model.enc_q(batch["spec"][1:, :, :14], batch["spec_lengths"][1:], g=ge[1:])
    for full, alone in ((m_p, m_p1), (logs_p, logs_p1), (m_q, m_q1), (logs_q, logs_q1)):
        torch.testing.assert_close(full[1:, :, :14], alone, atol=2e-5, rtol=1e-4)
        assert full[1, :, 14:].abs().max() == 0


# ------------------------------------------------------------------------------- codes and inference
def test_extract_latent_is_nearest_code_at_25hz() -> None:
    model = tiny_generator()
    ssl = torch.randn(3, TINY["ssl_dim"], 10, generator=torch.Generator().manual_seed(1))
    codes = model.extract_latent(ssl)
    assert codes.shape == (1, 3, 5) and codes.dtype == torch.int64
    # independent nearest-neighbour search on the projected frames
    proj = torch.nn.functional.conv1d(ssl, model.ssl_proj.weight, model.ssl_proj.bias, stride=2)
    embed = model.quantizer.vq.layers[0]._codebook.embed
    dist = torch.cdist(proj.transpose(1, 2).reshape(-1, proj.shape[1]).double(), embed.double())
    assert torch.equal(codes[0].reshape(-1), dist.argmin(dim=1))


def test_infer_is_deterministic_and_frame_aligned(sample_dir: Path) -> None:
    import soundfile as sf
    import soxr

    audio_cfg = AudioConfig(hop_length=TINY_HOP)
    wave, sr = sf.read(sample_dir / "wavs" / "LJ001-0002.flac", dtype="float32")
    wave = torch.from_numpy(soxr.resample(wave, sr, 32000))
    ref_spec = spectrogram(wave[: 40 * TINY_HOP], audio_cfg).unsqueeze(0)  # (1, 1025, 40) real reference

    model = tiny_generator().train()  # infer must switch dropout off by itself
    tc = 11
    ssl = torch.randn(2, TINY["ssl_dim"], 2 * tc, generator=torch.Generator().manual_seed(2))
    codes = model.extract_latent(ssl)
    text, text_lengths = torch.randint(0, 732, (2, 6)), torch.tensor([6, 4])

    a = model.infer(codes, text, text_lengths, ref_spec)
    b = model.infer(codes, text, text_lengths, ref_spec)
    assert model.training  # mode restored
    assert a.shape == (2, 1, 2 * tc * TINY_HOP)
    assert torch.equal(a, b)
    n1 = model.infer(codes, text, text_lengths, ref_spec, 0.5, torch.Generator().manual_seed(7))
    n2 = model.infer(codes, text, text_lengths, ref_spec, 0.5, torch.Generator().manual_seed(7))
    n3 = model.infer(codes, text, text_lengths, ref_spec, 0.5, torch.Generator().manual_seed(8))
    assert torch.equal(n1, n2) and not torch.equal(n1, n3)
    # the mel of the output has exactly the 2*Tc frames of the target spectrogram (center=False)
    assert mel_spectrogram(a.squeeze(1), audio_cfg).shape[-1] == 2 * tc
    # infer_from_ssl is the same path
    torch.testing.assert_close(model.infer_from_ssl(ssl, text, text_lengths, ref_spec), a)


def test_decoder_output_sample_n_belongs_to_latent_frame_n_over_hop() -> None:
    """Frame alignment of the decoder: decoding a window of latent frames reproduces the same samples
    of the full decode (away from the window edges), i.e. frame f <-> samples [f*hop, (f+1)*hop)."""
    model = tiny_generator().eval()
    z = torch.randn(1, TINY["inter_channels"], 40, generator=torch.Generator().manual_seed(4))
    g = torch.randn(1, TINY["gin_channels"], 1)
    with torch.no_grad():
        full = model.dec(z, g=g)
        part = model.dec(z[:, :, 12:28], g=g)
    assert full.shape[-1] == 40 * TINY_HOP and part.shape[-1] == 16 * TINY_HOP
    lo, hi = 6, 10  # frames 18..22 of the full signal, far from the window edges
    torch.testing.assert_close(
        part[..., lo * TINY_HOP : hi * TINY_HOP],
        full[..., (12 + lo) * TINY_HOP : (12 + hi) * TINY_HOP],
        atol=1e-6,
        rtol=1e-5,
    )


def test_infer_batch_item_matches_single_item_decode() -> None:
    model = tiny_generator().eval()
    gen = torch.Generator().manual_seed(5)
    codes = torch.randint(0, TINY["codebook_size"], (1, 2, 9), generator=gen)
    text = torch.randint(0, 732, (2, 6), generator=gen)
    refer = torch.rand(1, 1025, 30, generator=gen)  # one reference shared by the batch
    batch = model.infer(codes, text, torch.tensor([6, 4]), refer, code_lengths=torch.tensor([9, 7]))
    alone = model.infer(codes[:, 1:, :7], text[1:, :4], torch.tensor([4]), refer)
    assert alone.shape[-1] == 2 * 7 * TINY_HOP
    # the decoder itself has no masks (as officially): its last frames see the padding, so compare up to
    # 4 frames (its conv_pre reach plus margin) before the end of the shorter item
    n = (2 * 7 - 4) * TINY_HOP
    torch.testing.assert_close(batch[1:, :, :n], alone[..., :n], atol=2e-5, rtol=1e-4)


def test_infer_rejects_bad_codes_layout() -> None:
    model = tiny_generator()
    with pytest.raises(ValueError, match=r"\(n_q, B, T\)"):
        model.infer(
            torch.zeros(2, 5, dtype=torch.long),
            torch.zeros(2, 3, dtype=torch.long),
            torch.tensor([3, 3]),
            torch.rand(1, 1025, 10),
        )


def test_segment_window_length_matches_config() -> None:
    model = tiny_generator()
    assert model.segment_frames * TINY_HOP == TINY["segment_size"]
    assert math.prod(TINY["upsample_rates"]) == TINY_HOP == model.hop_length


def test_discriminator_batched_and_separate_passes_agree() -> None:
    """D step (y_hat detached: one batched pass) and G step (separate passes) give the same outputs."""
    torch.manual_seed(0)
    disc = build_discriminator("v2", periods=(2, 3))
    g = torch.Generator().manual_seed(1)
    y = torch.randn(2, 1, 1000, generator=g)
    y_hat = torch.randn(2, 1, 1000, generator=g, requires_grad=True)
    batched = disc(y, y_hat.detach())
    separate = disc(y, y_hat)
    for a_list, b_list in zip(batched[:2], separate[:2], strict=True):
        for a, b in zip(a_list, b_list, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    for a_maps, b_maps in zip(batched[2] + batched[3], separate[2] + separate[3], strict=True):
        for a, b in zip(a_maps, b_maps, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert [len(f) for f in separate[2]] == [7, 6, 6]
