"""The sync-free training step computes what the plain step computes.

`reference_step` below is the straightforward official step (facts §6.5) as gsv-train ran it before the
GPU-throughput work: foreach AdamW, the finiteness of each loss and gradient norm read on the host, an
update skipped by not calling `step()`, nine `.item()` reads. `train_step` now decides everything on the
device, uses fused AdamW and reads one tensor back per step. Same weights, same batch, same RNG: the losses
and the parameter updates must agree within fp32 noise, and a non-finite step must still be skipped.
"""

from __future__ import annotations

import math

import pytest
import torch

from gptsovits_train.audio.spectrogram import mel_spectrogram, spec_to_mel
from gptsovits_train.config import load_config
from gptsovits_train.models import MultiPeriodDiscriminator, build_generator_from_config
from gptsovits_train.models.commons import slice_segments
from gptsovits_train.models.losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    kl_loss,
    mel_l1_loss,
)
from gptsovits_train.train.dataset import SoVITSDataset, collate, load_splits
from gptsovits_train.train.distributed import DistContext
from gptsovits_train.train.sovits_stage import generator_param_groups
from gptsovits_train.train.step import train_step
from tests.fit_helpers import CONFIGS, make_dataset

CTX = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), initialised_here=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    ds = make_dataset(tmp_path_factory.mktemp("ds"), n_train=2, n_val=1, max_seconds=1.2)
    cfg = load_config(CONFIGS / "tiny.yaml", [f"train.dataset={ds.root}", "model.segment_size=1280"])
    splits = load_splits(
        ds.root, cfg.audio, ssl_dim=cfg.model.ssl_dim, boundaries=cfg.train.bucket_boundaries
    )
    data = SoVITSDataset(splits.root, splits.train, cfg.audio)
    batch = collate([data[0], data[1]])

    def build():
        """The same initial weights on every call (weight norm rules out deepcopy)."""
        G = build_generator_from_config(cfg.model, cfg.audio, seed=0)
        G.quantizer.initialize_random_(torch.Generator().manual_seed(0))
        for name, p in G.named_parameters():
            if name.startswith(("ssl_proj.", "quantizer.")):
                p.requires_grad_(False)
        torch.manual_seed(1)
        return G, MultiPeriodDiscriminator(())

    return cfg, batch, build


def _optims(cfg, G, D, **impl):
    t = cfg.train
    kw = dict(betas=t.betas, eps=t.eps, weight_decay=t.weight_decay, **impl)
    og = torch.optim.AdamW(
        generator_param_groups(G, t.learning_rate, t.text_low_lr_rate), t.learning_rate, **kw
    )
    od = torch.optim.AdamW([p for p in D.parameters() if p.requires_grad], t.learning_rate, **kw)
    return og, od


def reference_step(G, D, batch, og, od, cfg, segment_frames):
    """The plain step: host-side finiteness checks, `.item()` per value, skip by not stepping."""
    t, audio = cfg.train, cfg.audio
    hop = audio.hop_length
    out = G(batch.ssl, batch.spec, batch.spec_lengths, batch.text, batch.text_lengths)
    y = slice_segments(batch.wav, out.ids_slice * hop, segment_frames * hop)
    y_mel = spec_to_mel(slice_segments(batch.spec, out.ids_slice, segment_frames).float(), audio)
    y_hat_mel = mel_spectrogram(out.y_hat.float().squeeze(1), audio)[:, :, :segment_frames]
    od.zero_grad(set_to_none=True)
    real, fake, _, _ = D(y, out.y_hat.detach())
    loss_d, _ = discriminator_loss(real, fake)
    loss_d.backward()
    gn_d = torch.nn.utils.get_total_norm([p.grad for p in D.parameters() if p.grad is not None])
    d_ok = math.isfinite(loss_d.item()) and math.isfinite(gn_d.item())
    if d_ok:
        od.step()
    og.zero_grad(set_to_none=True)
    _, fake, fmap_r, fmap_g = D(y, out.y_hat)
    loss_mel, _ = mel_l1_loss(y_mel, y_hat_mel)
    loss_kl, _ = kl_loss(out.z_p, out.logs_q, out.m_p, out.logs_p, out.z_mask)
    loss_fm, _ = feature_matching_loss(fmap_r, fmap_g)
    loss_gen, _ = generator_adversarial_loss(fake)
    loss_g = t.c_gen * loss_gen + t.c_fm * loss_fm + t.c_mel * loss_mel + t.c_kl * loss_kl + out.kl_ssl
    loss_g.backward()
    gn_g = torch.nn.utils.get_total_norm([p.grad for p in G.parameters() if p.grad is not None])
    g_ok = math.isfinite(loss_g.item()) and math.isfinite(gn_g.item())
    if g_ok:
        og.step()
    return d_ok, g_ok, {"loss/d": loss_d.item(), "loss/g": loss_g.item(), "loss/mel": loss_mel.item()}


def _run_both(setup, poison=None):
    cfg, batch, build = setup
    G0, D0 = build()
    seg = cfg.model.segment_size // cfg.audio.hop_length
    runs = {}
    for kind in ("reference", "optimised"):
        G, D = build()
        if poison is not None:
            poison(G)
        torch.manual_seed(123)  # the random training window and the flow's noise
        if kind == "reference":
            og, od = _optims(cfg, G, D, foreach=True)
            d_ok, g_ok, values = reference_step(G, D, batch, og, od, cfg, seg)
        else:
            og, od = _optims(cfg, G, D, fused=True)
            result = train_step(
                G, D, batch, optim_g=og, optim_d=od,
                scaler=torch.amp.GradScaler("cpu", enabled=False),
                g_params=[p for p in G.parameters() if p.requires_grad],
                d_params=[p for p in D.parameters() if p.requires_grad],
                segment_frames=seg, audio=cfg.audio, train=cfg.train,
                device=torch.device("cpu"), precision="fp32", ctx=CTX,
            )  # fmt: skip
            d_ok, g_ok, values = result.d_ok, result.g_ok, result.values
        runs[kind] = (d_ok, g_ok, values, G, D)
    return runs, G0, D0


def test_same_losses_and_same_update_as_the_plain_step(setup):
    runs, G0, D0 = _run_both(setup)
    (rd, rg, rv, RG, RD), (od, og, ov, OG, OD) = runs["reference"], runs["optimised"]
    assert rd and rg and od and og
    for key, value in rv.items():
        assert ov[key] == pytest.approx(value, rel=1e-6), key
    for before, ref, opt in ((G0, RG, OG), (D0, RD, OD)):
        for (name, p0), pr, po in zip(
            before.named_parameters(), ref.parameters(), opt.parameters(), strict=True
        ):
            delta_ref, delta_opt = pr.detach() - p0.detach(), po.detach() - p0.detach()
            # the updates themselves (not just the weights) agree to fp32 noise; frozen ones stay zero
            torch.testing.assert_close(delta_opt, delta_ref, atol=1e-7, rtol=1e-4, msg=name)
    changed = sum(
        int(not torch.equal(p0, po)) for p0, po in zip(G0.parameters(), OG.parameters(), strict=True)
    )
    assert changed > 10  # the step really updated the generator


def test_a_non_finite_generator_step_is_skipped_like_before(setup):
    def poison(G):
        with torch.no_grad():
            G.dec.conv_post.weight.fill_(float("nan"))

    runs, G0, _ = _run_both(setup, poison)
    for kind in ("reference", "optimised"):
        _, g_ok, values, G, _ = runs[kind]
        assert g_ok is False, kind
        assert math.isnan(values["loss/g"]), kind
        for (name, p0), p in zip(G0.named_parameters(), G.parameters(), strict=True):
            if name != "dec.conv_post.weight":
                assert torch.equal(p0, p), f"{kind}: {name} changed in a skipped step"
    assert runs["optimised"][0] == runs["reference"][0]  # the discriminator's verdict agrees too


def test_fp16_style_scaler_path_skips_a_nan_loss_and_lowers_the_scale():
    """The scaler branch (fp16 on CUDA) exercised with a CPU GradScaler: a NaN loss poisons the gradients,
    the scaler skips the update and halves its scale; a finite loss updates."""
    from gptsovits_train.train.step import _backward_and_update

    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([w], lr=0.1, fused=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    loss = (w * torch.tensor([1.0, float("nan"), 1.0])).sum()
    ok, _ = _backward_and_update(loss, opt, [w], scaler, None, CTX)
    scaler.update()
    assert not bool(ok) and torch.equal(w.detach(), torch.ones(3)) and scaler.get_scale() == 512.0
    opt.zero_grad()
    ok, _ = _backward_and_update((w * 2).sum(), opt, [w], scaler, None, CTX)
    scaler.update()
    assert bool(ok) and bool((w.detach() < 1).all())
