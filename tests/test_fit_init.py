"""Initialisation from pretrained s2G/s2D files (strict key report), and a short run through the other
code paths: bf16 autocast on CPU, gradient clipping, the official exponential schedule."""

from __future__ import annotations

import json

import pytest
import torch

from gptsovits_train.config import load_config
from gptsovits_train.errors import CheckpointError, GsvError
from gptsovits_train.models import MultiPeriodDiscriminator, build_generator_from_config
from gptsovits_train.train.loop import fit
from gptsovits_train.train.precision import resolve_precision
from gptsovits_train.train.sovits_stage import generator_param_groups, init_from_pretrained
from tests.fit_helpers import CONFIGS, make_dataset


def tiny(*overrides):
    return load_config(CONFIGS / "tiny.yaml", list(overrides))


def fresh(cfg):
    return build_generator_from_config(cfg.model, cfg.audio, seed=1), MultiPeriodDiscriminator(())


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """Official-style pretrained files: {"weight": state_dict} for G and D (random tiny weights)."""
    root = tmp_path_factory.mktemp("pretrained")
    cfg = tiny()
    G = build_generator_from_config(cfg.model, cfg.audio, seed=7, random_codebook=True)
    torch.manual_seed(7)
    D = MultiPeriodDiscriminator(())
    torch.save({"weight": G.state_dict()}, root / "s2G.pth")
    torch.save({"weight": D.state_dict()}, root / "s2D.pth")
    return root, G.state_dict(), D.state_dict()


def test_init_loads_both_files_exactly(pretrained):
    root, g_ref, d_ref = pretrained
    cfg = tiny(f"train.pretrained_s2G={root / 's2G.pth'}", f"train.pretrained_s2D={root / 's2D.pth'}")
    G, D = fresh(cfg)
    reports = init_from_pretrained(G, D, cfg)
    for key, value in g_ref.items():
        assert torch.equal(G.state_dict()[key], value), key
    for key, value in d_ref.items():
        assert torch.equal(D.state_dict()[key], value), key
    assert f"{len(g_ref)}/{len(g_ref)} keys match" in reports["generator"]
    assert G.quantizer.is_initialized()  # codebook from the file, not random


def test_init_refuses_swapped_roles_and_other_shapes(pretrained, tmp_path):
    root, _, _ = pretrained
    cfg = tiny(f"train.pretrained_s2G={root / 's2D.pth'}")
    with pytest.raises(GsvError, match=r"holds discriminator weights, but train\.pretrained_s2G"):
        init_from_pretrained(*fresh(cfg), cfg)
    wider = tiny("model.hidden_channels=48", f"train.pretrained_s2G={root / 's2G.pth'}")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        init_from_pretrained(*fresh(wider), wider)


def test_random_init_has_a_codebook():
    cfg = tiny()
    G, D = fresh(cfg)
    assert not G.quantizer.is_initialized()
    reports = init_from_pretrained(G, D, cfg)
    assert reports == {"generator": "random init", "discriminator": "random init"}
    assert G.quantizer.is_initialized()


def test_official_param_groups():
    cfg = tiny()
    G, _ = fresh(cfg)
    G.ssl_proj.requires_grad_(False)
    groups = generator_param_groups(G, 1e-4, 0.4)
    assert [g["name"] for g in groups] == ["base", "enc_p.text_embedding", "enc_p.encoder_text", "enc_p.mrte"]
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 4e-5, 4e-5, 4e-5])
    grouped = {id(p) for g in groups for p in g["params"]}
    trainable = {id(p) for n, p in G.named_parameters() if not n.startswith(("ssl_proj.", "quantizer."))}
    assert grouped == trainable  # every trainable parameter exactly once, frozen ones never


def test_resolve_precision_on_cpu():
    cpu = torch.device("cpu")
    assert [resolve_precision(p, cpu) for p in ("auto", "fp32", "bf16")] == ["fp32", "fp32", "bf16"]
    with pytest.raises(GsvError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu)


def test_short_run_bf16_clipping_exponential_from_pretrained(pretrained, tmp_path):
    root, g_ref, _ = pretrained
    ds = make_dataset(tmp_path / "ds", n_train=1, n_val=1, max_seconds=1.2)
    cfg = tiny(
        f"train.dataset={ds.root}",
        f"train.pretrained_s2G={root / 's2G.pth'}",
        f"train.pretrained_s2D={root / 's2D.pth'}",
        "train.epochs=1",
        "train.batch_size=1",
        "train.min_items_per_epoch=1",
        "model.segment_size=1280",
        "train.precision=bf16",
        "train.grad_clip=1.0",
        "train.scheduler.kind=exponential",
    )
    result = fit(cfg, tmp_path / "run", progress=False)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["precision"] == "bf16" and result.steps == 1
    assert str(root / "s2G.pth") in summary["init"]["generator"]
    assert summary["lr_final"]["g"] == pytest.approx(1e-4 * 0.999875, rel=1e-12)
    assert summary["reload_matches_best"] is True
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    # trained from the pretrained weights: frozen parts unchanged, trained parts moved
    assert torch.equal(best["generator"]["ssl_proj.weight"], g_ref["ssl_proj.weight"])
    assert not torch.equal(best["generator"]["dec.conv_pre.bias"], g_ref["dec.conv_pre.bias"])
