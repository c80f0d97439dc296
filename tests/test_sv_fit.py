"""v2Pro/v2ProPlus training: version presets, sv_emb in the data path, init checks, the CLI chain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gptsovits_train.checkpoints.export import export_weights
from gptsovits_train.checkpoints.version import detect_sovits_version, require_same_version
from gptsovits_train.cli import app
from gptsovits_train.config import AudioConfig, ModelConfig, load_config
from gptsovits_train.data.manifest import read_manifest, write_manifest
from gptsovits_train.errors import CheckpointError, GsvError
from gptsovits_train.fileio import atomic_save_npy
from gptsovits_train.layout import DatasetLayout, RunLayout
from gptsovits_train.models import (
    build_discriminator_from_config,
    build_generator,
    build_generator_from_config,
)
from gptsovits_train.train.dataset import Sample, SoVITSDataset, collate, load_splits
from tests.fit_helpers import make_dataset

REPO = Path(__file__).resolve().parents[1]
PRO = ("v2Pro", "v2ProPlus")
runner = CliRunner()


def add_sv(layout: DatasetLayout, dim: int, seed: int = 0, *, skip: tuple[str, ...] = ()) -> None:
    """Give every clip of a `make_dataset` dataset a random signed sv feature file (except `skip`)."""
    rng = np.random.default_rng(seed)
    clips = read_manifest(layout.manifest)
    for clip in clips:
        if clip.id in skip:
            continue
        atomic_save_npy(layout.sv(clip.id), (rng.standard_normal(dim) * 15).astype(np.float16))
        clip.sv = layout.relative(layout.sv(clip.id))
    write_manifest(layout.manifest, clips)


# ------------------------------------------------------------------------------------- presets
@pytest.mark.parametrize("version", PRO)
def test_version_alone_gives_the_official_structure(
    tmp_path: Path, reference_dir: Path, version: str
) -> None:
    """`model: {version: X}` in a YAML file is the official X: hps.model, G keys/shapes, export keys."""
    path = tmp_path / "c.yaml"
    path.write_text(f"model:\n  version: {version}\n")
    cfg = load_config(path)
    manifest = json.loads((reference_dir / f"sovits_{version}_G_state.json").read_text())
    ours = cfg.model.model_dump()
    official = manifest["hps.model"]
    assert {k: ours[k] for k in official} == official
    assert cfg.model.sv_dim == 20480
    with torch.device("meta"):
        G = build_generator_from_config(cfg.model, cfg.audio)
    state = G.state_dict()
    assert [(k, list(v.shape)) for k, v in state.items()] == [
        (k, meta["shape"]) for k, meta in manifest["state_dict"].items()
    ]
    exported = [k for k, meta in manifest["state_dict"].items() if meta["in_exported_weights"]]
    keys_only = {k: torch.zeros(0) for k in state}  # export_weights selects keys; values are irrelevant here
    assert list(export_weights(keys_only)) == exported and len(exported) == 678
    D = build_discriminator_from_config(cfg.model)
    assert len(D.discriminators) == 8
    assert [d.period for d in D.discriminators[1:]] == [2, 3, 5, 7, 11, 17, 23]


def test_explicit_keys_win_over_the_preset() -> None:
    m = ModelConfig.model_validate({"version": "v2ProPlus", "gin_channels": 32, "p_dropout": 0.2})
    assert (m.gin_channels, m.p_dropout, m.upsample_initial_channel) == (32, 0.2, 768)
    assert ModelConfig().gin_channels == 512 and ModelConfig(version="v2Pro").gin_channels == 1024
    tiny = load_config(REPO / "configs" / "tiny.yaml", ["model.version=v2Pro"])
    assert tiny.model.gin_channels == 32 and tiny.model.p_dropout == 0.0


# ------------------------------------------------------------------------------------- data path
def _sample(cid: str, frames: int, sv: torch.Tensor | None) -> Sample:
    return Sample(
        clip_id=cid,
        ssl=torch.zeros(4, frames),
        spec=torch.zeros(3, frames),
        wav=torch.zeros(1, frames * 640),
        phone_ids=torch.ones(5, dtype=torch.long),
        sv=sv,
    )


def test_collate_keeps_sv_rows_with_their_clips() -> None:
    a, b, c = (torch.full((6,), float(i)) for i in range(3))
    batch = collate([_sample("a", 10, a), _sample("b", 30, b), _sample("c", 20, c)])
    assert batch.clip_ids == ["b", "c", "a"]  # longest first, as official
    assert batch.sv_emb is not None and batch.sv_emb[:, 0].tolist() == [1.0, 2.0, 0.0]
    assert collate([_sample("a", 10, None)]).sv_emb is None
    with pytest.raises(ValueError, match="with and without"):
        collate([_sample("a", 10, a), _sample("b", 10, None)])
    moved = batch.to("cpu")
    assert moved.sv_emb is not None and torch.equal(moved.sv_emb, batch.sv_emb)


def test_dataset_yields_float32_sv(tmp_path: Path) -> None:
    layout = make_dataset(tmp_path / "d", n_train=2, n_val=1, max_seconds=1.0)
    add_sv(layout, 24)
    splits = load_splits(layout.root, AudioConfig(), sv_dim=24, boundaries=[4, 300])
    item = SoVITSDataset(splits.root, splits.train, AudioConfig(), with_sv=True)[0]
    stored = np.load(layout.root / str(splits.train[0].sv))
    assert item.sv is not None and item.sv.dtype == torch.float32
    assert torch.equal(item.sv, torch.from_numpy(stored.astype(np.float32)))


def test_missing_or_wrong_sized_sv_is_refused_with_what_to_run(tmp_path: Path) -> None:
    layout = make_dataset(tmp_path / "d", n_train=2, n_val=1, max_seconds=1.0)
    add_sv(layout, 24, skip=(read_manifest(layout.manifest)[0].id,))
    with pytest.raises(GsvError, match=r"1 clips without speaker-verification features.*--sv FILE"):
        load_splits(layout.root, AudioConfig(), sv_dim=24, boundaries=[4, 300])
    add_sv(layout, 24)
    with pytest.raises(GsvError, match=r"wrong size: .*expected \(1280,\).*model.sv_dim: 1280"):
        load_splits(layout.root, AudioConfig(), sv_dim=1280, boundaries=[4, 300])
    load_splits(layout.root, AudioConfig(), boundaries=[4, 300])  # v2 ignores sv features


def test_pro_generator_needs_sv_emb_in_training_and_inference() -> None:
    tiny = dict(
        hidden_channels=16,
        filter_channels=32,
        inter_channels=8,
        n_layers=1,
        upsample_initial_channel=16,
        upsample_rates=[10, 8, 8],
        upsample_kernel_sizes=[20, 16, 16],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1]],
        gin_channels=16,
        segment_size=2560,
        sv_dim=24,
    )
    G = build_generator("v2Pro", random_codebook=True, seed=0, **tiny).eval()
    t = 12
    ssl, spec = torch.randn(1, 768, t), torch.rand(1, 1025, t)
    lengths, text, tl = torch.tensor([t]), torch.ones(1, 5, dtype=torch.long), torch.tensor([5])
    with pytest.raises(ValueError, match=r"needs sv_emb \(B, 24\)"):
        G(ssl, spec, lengths, text, tl)
    sv1, sv2 = torch.randn(1, 24) * 15, torch.randn(1, 24) * 15
    out = G(ssl, spec, lengths, text, tl, sv1, generator=torch.Generator().manual_seed(0))
    assert out.y_hat.shape == (1, 1, 2560)
    codes = G.extract_latent(ssl)
    a = G.infer(codes, text, tl, spec, sv_emb=sv1)
    b = G.infer(codes, text, tl, spec, sv_emb=sv2)
    assert a.shape == (1, 1, t * 640) and not torch.equal(a, b)  # the sv feature conditions the output


# ------------------------------------------------------------------------------------- init
def test_pro_model_from_v2_weights_is_a_clear_error() -> None:
    tiny = dict(hidden_channels=16, filter_channels=32, inter_channels=8, n_layers=1, gin_channels=16)
    v2 = build_generator("v2", **tiny).state_dict()
    pro = build_generator("v2Pro", **tiny).state_dict()
    with pytest.raises(CheckpointError, match=r"holds v2 generator weights, but model\.version is v2Pro"):
        require_same_version(v2, "v2Pro", role="generator", what="s2G.pth")
    with pytest.raises(CheckpointError, match=r"holds v2Pro generator weights, but model\.version is v2"):
        require_same_version(pro, "v2", role="generator", what="s2G.pth")
    require_same_version(pro, "v2Pro", role="generator", what="s2G.pth")
    d_v2 = {f"discriminators.{i}.conv_post.weight": torch.zeros(1) for i in range(6)}
    with pytest.raises(CheckpointError, match="6 sub-discriminators"):
        require_same_version(d_v2, "v2ProPlus", role="discriminator", what="s2D.pth")


# ------------------------------------------------------------------------------------- CLI chain
@pytest.fixture(scope="module")
def pro_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`prepare --sample` with the random-tiny HuBERT and sv models (the demo configuration + v2Pro)."""
    data = tmp_path_factory.mktemp("pro") / "data"
    args = ["prepare", "--sample", "--config", str(REPO / "configs/demo.yaml"), "--out", str(data), "-q"]
    r = runner.invoke(app, [*args, "--sv", "random-tiny", "--set", "model.version=v2Pro"])
    assert r.exit_code == 0, r.output
    return data


@pytest.mark.parametrize("version", PRO)
def test_prepare_fit_export_inspect(
    pro_dataset: Path, tmp_path: Path, version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GSV_TRAIN_PRETRAINED", str(tmp_path / "no-pretrained"))
    clips = read_manifest(DatasetLayout(pro_dataset).manifest)
    assert len(clips) == 12 and all(c.sv and c.ssl for c in clips)
    run = tmp_path / "run"
    overrides = [f"train.dataset={pro_dataset}", f"model.version={version}", "model.sv_dim=1280"]
    overrides += ["train.epochs=1", "train.val_max_clips=1", "train.min_items_per_epoch=2"]
    args = ["fit", "--config", str(REPO / "configs/tiny.yaml"), "--run-dir", str(run), "-q"]
    r = runner.invoke(app, [*args, *[x for o in overrides for x in ("--set", o)]])
    assert r.exit_code == 0, r.output
    summary = json.loads(RunLayout(run / "sovits").summary.read_text())
    assert summary["reload_matches_best"] is True

    r = runner.invoke(app, ["export-best", str(run), "--name", "pro"])
    assert r.exit_code == 0, r.output
    (export,) = sorted(RunLayout(run / "sovits").exports_dir.glob("pro_e*_s*.pth"))
    assert export.read_bytes()[:2] == {"v2Pro": b"05", "v2ProPlus": b"06"}[version]
    assert detect_sovits_version(export).model_version == version
    r = runner.invoke(app, ["inspect", str(export)])
    assert r.exit_code == 0, r.output
    assert f"version:     {version}" in r.output
    assert "loads into our generator (strict): yes" in r.output

    # a v2 model cannot start from these Pro weights, and says why
    v2_args = [*args[:3], "--run-dir", str(tmp_path / "r2"), "-q", "--set", f"train.dataset={pro_dataset}"]
    r = runner.invoke(app, [*v2_args, "--set", f"train.pretrained_s2G={export}"])
    # (a tiny v2ProPlus decoder is not 768 wide, so its weights read as "v2Pro"; both are Pro)
    assert r.exit_code != 0 and "generator weights, but model.version is v2;" in r.output


def test_v2pro_yaml_is_the_official_v2pro() -> None:
    from gptsovits_train.models import official_model_config

    cfg = load_config(REPO / "configs" / "v2pro.yaml")
    assert cfg.model == official_model_config("v2Pro")
    assert cfg.prepare.features.sv and cfg.train.spk_sim_model == cfg.prepare.features.sv
    assert cfg.train.pretrained_s2G == "pretrained/v2Pro/s2Gv2Pro.pth"
