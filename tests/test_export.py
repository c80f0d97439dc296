"""`export-best` and `inspect` (issue 6): official export format, verified against the reference manifests
and the official version-detection rules; bad input; the CLI."""

from __future__ import annotations

import errno
import hashlib
import io
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import gptsovits_train.checkpoints.export as export_mod
from gptsovits_train.checkpoints import (
    EXPORT_DROPPED_PATTERNS,
    config_hash,
    detect_sovits_version,
    load_state_dict_strict,
    read_weights,
)
from gptsovits_train.checkpoints.export import export_best, manifest_path_for
from gptsovits_train.checkpoints.inspect import inspect_weights
from gptsovits_train.cli import app
from gptsovits_train.config import Config, ModelConfig
from gptsovits_train.errors import CheckpointError, GsvError
from gptsovits_train.layout import RunLayout
from gptsovits_train.models import build_generator, build_generator_from_config, official_model_config
from tests.official_files_helpers import (
    manifest_state,
    official_config,
    read_manifest,
    write_official_export,
    write_training_checkpoint,
)

V1_LIMIT = 82978 * 1024
OFFICIAL_V2_PLAIN_DICT_SIZE = 84_990_717  # facts §7.4: official logic, plain-dict config, random v2

TINY = {
    "hidden_channels": 16,
    "filter_channels": 32,
    "inter_channels": 8,
    "n_layers": 2,
    "upsample_initial_channel": 32,
    "upsample_rates": [8, 8],
    "upsample_kernel_sizes": [16, 16],
    "gin_channels": 16,
    "hop_length": 64,
    "segment_size": 512,
    "ssl_dim": 32,
    "codebook_size": 64,
}


def tiny_config(version: str = "v2") -> Config:
    model = official_model_config(version).model_dump()
    audio = {"hop_length": 64}
    model.update({k: v for k, v in TINY.items() if k != "hop_length"})
    if version in ("v2Pro", "v2ProPlus"):
        model["gin_channels"] = 32
    return Config.model_validate({"model": model, "audio": audio})


def run_state(generator_state, cfg: Config, *, epoch: int, step: int, value: float) -> dict:
    """A run checkpoint per the brief's contract (what `fit` writes)."""
    return {
        "format": "gsv-train-checkpoint",
        "format_version": 1,
        "tool_version": "0.1.0",
        "generator": dict(generator_state),
        "discriminator": {"discriminators.0.conv_post.bias": torch.zeros(1)},
        "epoch": epoch,
        "step": step,
        "metrics": {"val/mel": value},
        "best": {"epoch": epoch, "step": step, "metric": "val/mel", "value": value},
        "config": cfg.to_dict(),
    }


def make_run(
    root: Path,
    best_state,
    cfg: Config,
    *,
    last_state=None,
    last_cfg: Config | None = None,
    best_at=(6, 120, 0.75),
) -> RunLayout:
    """A run folder with best.pt (epoch 6, step 120, val/mel 0.75) and optionally a later last.pt."""
    layout = RunLayout(root)
    layout.ckpt_dir.mkdir(parents=True)
    layout.config.write_text(cfg.to_yaml())
    epoch, step, value = best_at
    torch.save(run_state(best_state, cfg, epoch=epoch, step=step, value=value), layout.best)
    if last_state is not None:
        last = run_state(last_state, last_cfg or cfg, epoch=epoch + 3, step=step + 60, value=value + 0.5)
        last["best"] = {"epoch": epoch, "step": step, "metric": "val/mel", "value": value}
        torch.save(last, layout.last)
    return layout


def exported_keys(reference_dir: Path, version: str) -> list[str]:
    sd = read_manifest(reference_dir, version)["state_dict"]
    return [k for k, meta in sd.items() if meta["in_exported_weights"]]


# -------------------------------------------------------------------------- full-size v2 (module)
@pytest.fixture(scope="module")
def v2_export(tmp_path_factory, reference_dir):
    """A run folder whose best.pt holds a full-size v2 generator made from the reference manifest
    (random values, official keys/shapes/dtypes), and its export."""
    root = tmp_path_factory.mktemp("runs") / "ljs_voice"
    best = manifest_state(reference_dir, "v2", seed=1)
    # last.pt (epoch 9) is a valid, exportable checkpoint too, kept tiny to save time
    last = build_generator("v2", **TINY, seed=2).state_dict()
    layout = make_run(root, best, Config(), last_state=last, last_cfg=tiny_config())
    result = export_best(root)
    return {"layout": layout, "best": best, "result": result}


@pytest.mark.slow
def test_full_size_v2_export_follows_every_official_rule(v2_export, reference_dir):
    result, best = v2_export["result"], v2_export["best"]
    layout: RunLayout = v2_export["layout"]
    path = result.path
    # default location and official naming, from best.pt (epoch 6 step 120), never last.pt (epoch 9)
    assert path == layout.exports_dir / "ljs_voice_e6_s120.pth"
    assert (result.epoch, result.step, result.info) == (6, 120, "6epoch_120iteration")
    assert result.source == layout.best

    data = path.read_bytes()
    assert data[:4] == b"PK\x03\x04"
    # official detection: a plain zip above the v1 size limit is v2; no key may be dropped
    assert V1_LIMIT < len(data) < 700 * 1024 * 1024
    assert abs(len(data) - OFFICIAL_V2_PLAIN_DICT_SIZE) < 64 * 1024
    assert detect_sovits_version(path).as_tuple() == ("v2", "v2", False)

    # loads with plain torch.load(weights_only=True): no pickled classes
    obj = torch.load(path, map_location="cpu", weights_only=True)
    assert set(obj) == {"weight", "config", "info"}
    assert obj["info"] == "6epoch_120iteration"
    weight = obj["weight"]
    assert list(weight) == exported_keys(reference_dir, "v2") and len(weight) == 673
    assert not any("enc_q" in k for k in weight)
    assert {t.dtype for t in weight.values()} == {torch.float16}
    for key in ("enc_p.text_embedding.weight", "dec.ups.0.weight_v", "quantizer.vq.layers.0._codebook.embed"):
        assert torch.equal(weight[key], best[key].half())

    # config: plain JSON-able dicts with what the official loaders read, equal to the official hps
    config = obj["config"]
    json.dumps(config)
    manifest = read_manifest(reference_dir, "v2")
    assert config["model"] == manifest["hps.model"]
    assert {k: config["data"][k] for k in manifest["hps.data"]} == manifest["hps.data"]
    assert config["train"]["segment_size"] == 20480 and config["version"] == "v2"

    # manifest beside it
    meta = json.loads(manifest_path_for(path).read_text())
    assert meta["sha256"] == hashlib.sha256(data).hexdigest() == result.sha256
    assert meta["size_bytes"] == len(data)
    assert (meta["epoch"], meta["step"], meta["best_validation_loss"]) == (6, 120, 0.75)
    assert meta["source"]["path"] == str(layout.best.resolve())
    assert meta["config_hash"] == config_hash(config)
    assert meta["run_config_digest"] == Config().digest()
    assert meta["tool_version"] and meta["official_detection"]["model_version"] == "v2"


@pytest.mark.slow
def test_export_loads_into_official_structure_built_from_its_own_config(v2_export):
    """The official loader builds SynthesizerTrn(filter_length//2+1, segment_size//hop, **hps.model)
    from the exported config and loads the weights; we do the same with our generator, strictly."""
    obj = torch.load(v2_export["result"].path, map_location="cpu", weights_only=True)
    cfg = obj["config"]
    model = ModelConfig(
        **cfg["model"], n_speakers=cfg["data"]["n_speakers"], segment_size=cfg["train"]["segment_size"]
    )
    from gptsovits_train.config import AudioConfig

    audio = AudioConfig(
        **{k: cfg["data"][k] for k in ("sampling_rate", "filter_length", "hop_length", "win_length")}
    )
    generator = build_generator_from_config(model, audio)
    with pytest.raises(CheckpointError, match="103 missing"):
        load_state_dict_strict(generator, obj["weight"])  # strict without the export allowance
    report = load_state_dict_strict(generator, obj["weight"], allow_missing=EXPORT_DROPPED_PATTERNS)
    assert report.ok and len(report.allowed_missing) == 103
    assert all(k.startswith("enc_q.") for k in report.allowed_missing)
    best = v2_export["best"]
    state = generator.state_dict()
    assert torch.equal(
        state["flow.flows.0.enc.in_layers.0.weight_v"],
        best["flow.flows.0.enc.in_layers.0.weight_v"].half().float(),
    )


@pytest.mark.slow
def test_inspect_full_size_export(v2_export):
    report = inspect_weights(v2_export["result"].path)
    assert report.kind == "official-export" and report.official.model_version == "v2"
    assert report.n_keys == 673 and report.dtypes == {"float16": 673}
    assert report.info == "6epoch_120iteration"
    assert report.n_parameters + report.n_buffer_elements == report.n_elements == 42_389_633
    assert report.n_buffer_elements == 1_573_889  # quantizer buffers (manifest summary)
    assert report.loads and len(report.load_report.allowed_missing) == 103
    text = "\n".join(report.lines())
    assert "official:    model v2" in text and "loads into our generator (strict): yes" in text


@pytest.mark.slow
def test_safetensors_export_holds_the_same_tensors(v2_export, tmp_path):
    from safetensors import safe_open

    pth = torch.load(v2_export["result"].path, map_location="cpu", weights_only=True)
    result = export_best(v2_export["layout"].root, out=tmp_path, fmt="safetensors")
    assert result.path == tmp_path / "ljs_voice_e6_s120.safetensors"
    with safe_open(str(result.path), framework="pt") as fh:
        meta = fh.metadata()
        assert list(fh.keys()) == sorted(pth["weight"])
        for key in ("dec.ups.0.weight_v", "enc_p.text_embedding.weight"):
            assert torch.equal(fh.get_tensor(key), pth["weight"][key])
    assert json.loads(meta["config"]) == pth["config"] and meta["info"] == pth["info"]
    wf = read_weights(result.path)
    assert wf.kind == "safetensors-export" and (wf.epoch, wf.step) == (6, 120)


def test_export_failures_leave_nothing_behind(v2_export, tmp_path, monkeypatch):
    root = v2_export["layout"].root
    target = v2_export["result"].path
    before = target.read_bytes()
    # existing output refused without force
    with pytest.raises(GsvError, match="already exists; pass --force"):
        export_best(root)
    assert target.read_bytes() == before

    # disk full in the middle of writing
    def full_disk(fh, data):
        fh.write(data[: len(data) // 3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_mod, "_write_chunks", full_disk)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(GsvError, match="no space left on device; nothing was written"):
        export_best(root, out=out / "voice.pth")
    assert list(out.iterdir()) == []

    # the manifest write fails after the weights: the weights are removed again
    monkeypatch.undo()

    def failing_json(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_mod, "atomic_write_json", failing_json)
    with pytest.raises(GsvError, match="no space left"):
        export_best(root, out=out / "voice.pth")
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------------------ official sources
@pytest.mark.slow
def test_export_from_official_training_checkpoint(tmp_path, reference_dir):
    state = manifest_state(reference_dir, "v2", seed=3)  # fp32, enc_q included, as utils.save_checkpoint
    exp = tmp_path / "logs" / "myexp"
    g_path = write_training_checkpoint(exp / "logs_s2_v2" / "G_100.pth", state, iteration=8)
    (exp / "config.json").write_text(json.dumps(official_config(reference_dir, "v2", name="myexp")))

    result = export_best(g_path)
    assert result.path == g_path.parent / "myexp_e8_s100.pth"
    facts = read_manifest(reference_dir, "v2")["summary"]["official_export_of_this_random_init"]
    assert result.info == facts["info_field"] == "8epoch_100iteration"
    assert result.n_keys == facts["n_weight_keys"]
    assert result.official_detection.as_tuple() == tuple(
        facts["detected_by_get_sovits_version_from_path_fast"]
    )
    obj = torch.load(result.path, weights_only=True)
    assert set(obj) == set(facts["top_level_keys"])
    assert obj["config"]["model"] == read_manifest(reference_dir, "v2")["hps.model"]
    assert obj["config"]["name"] == "myexp"
    meta = json.loads(result.manifest_path.read_text())
    assert meta["source"]["kind"] == "official-training" and "config.json" in meta["config_source"]
    assert meta["dropped_enc_q_keys"] == 103 and meta["best_validation_loss"] is None

    report = inspect_weights(g_path, load=False)
    assert report.kind == "official-training" and report.loads and report.epoch == 8 and report.step == 100


@pytest.mark.slow
def test_v2pro_export_has_header_05_and_reexports_official_hparams_file(tmp_path, reference_dir):
    """Source: an official v2Pro export (config pickled as utils.HParams, header 05)."""
    state = manifest_state(reference_dir, "v2Pro", seed=4, dtype=torch.float16)
    src = write_official_export(
        tmp_path / "SoVITS_weights_v2Pro" / "proverb_e4_s80.pth",
        state,
        official_config(reference_dir, "v2Pro", name="proverb"),
        info="4epoch_80iteration",
        version="v2Pro",
    )
    facts = read_manifest(reference_dir, "v2Pro")["summary"]["official_export_of_this_random_init"]
    assert detect_sovits_version(src).as_tuple() == tuple(
        facts["detected_by_get_sovits_version_from_path_fast"]
    )

    result = export_best(src, out=f"{tmp_path / 'out'}/")  # a folder to create
    assert result.path == tmp_path / "out" / "proverb_e4_s80.pth"
    data = result.path.read_bytes()
    assert data[:2] == b"05" and data[:8].hex() == facts["first_8_bytes_hex"]
    assert detect_sovits_version(result.path).as_tuple() == ("v2", "v2Pro", False)
    assert abs(len(data) - facts["file_size_bytes"]) < 64 * 1024
    obj = torch.load(io.BytesIO(b"PK" + data[2:]), weights_only=True)  # after restoring PK
    assert list(obj["weight"]) == exported_keys(reference_dir, "v2Pro") and len(obj["weight"]) == 678
    assert obj["config"]["model"] == read_manifest(reference_dir, "v2Pro")["hps.model"]
    assert type(obj["config"]) is dict and obj["config"]["version"] == "v2Pro"
    assert torch.equal(obj["weight"]["sv_emb.weight"], state["sv_emb.weight"])


@pytest.mark.slow
def test_inspect_official_discriminator_checkpoint(tmp_path, reference_dir):
    d_state = manifest_state(reference_dir, "v2", part="D", seed=5)
    path = write_training_checkpoint(tmp_path / "logs_s2_v2" / "D_100.pth", d_state, iteration=8)
    report = inspect_weights(path, load=False)
    assert (report.kind, report.role, report.version, report.epoch, report.step) == (
        "official-training",
        "discriminator",
        "v2",
        8,
        100,
    )
    assert report.n_keys == 111 and report.loads
    assert report.n_parameters == read_manifest(reference_dir, "v2", "D")["summary"]["n_parameters"]


# -------------------------------------------------------------------------- our generator, tiny
@pytest.mark.parametrize("version", ["v2", "v2Pro"])
def test_round_trip_into_our_generator_strict(tmp_path, version):
    cfg = tiny_config(version)
    generator = build_generator_from_config(cfg.model, cfg.audio, seed=0, random_codebook=True)
    other = build_generator_from_config(cfg.model, cfg.audio, seed=1, random_codebook=True)
    layout = make_run(tmp_path / "run", generator.state_dict(), cfg, last_state=other.state_dict())
    result = export_best(layout.root, name="tiny")
    assert result.path.name == "tiny_e6_s120.pth"
    assert result.path.read_bytes()[:2] == (b"05" if version == "v2Pro" else b"PK")

    fresh = build_generator_from_config(cfg.model, cfg.audio, seed=2)
    wf = read_weights(result.path)
    report = load_state_dict_strict(fresh, wf.state, allow_missing=EXPORT_DROPPED_PATTERNS)
    assert report.ok and report.allowed_missing and all("enc_q" in k for k in report.allowed_missing)
    got, want, last = fresh.state_dict(), generator.state_dict(), other.state_dict()
    for key in want:
        if "enc_q" not in key:
            assert torch.equal(got[key], want[key].half().float()), key
    assert not torch.equal(got["dec.conv_pre.weight"], last["dec.conv_pre.weight"].half().float())

    # a second export from the export itself keeps our config and the same tensors
    again = export_best(result.path, out=tmp_path / "again.pth")
    assert torch.equal(read_weights(again.path).state["dec.conv_pre.weight"], wf.state["dec.conv_pre.weight"])
    assert (
        json.loads(again.manifest_path.read_text())["config_source"]
        == "gsv-train config stored in the export"
    )


def test_export_from_a_run_checkpoint_file_and_epoch_files(tmp_path):
    cfg = tiny_config()
    generator = build_generator("v2", **TINY, seed=0, random_codebook=True)
    layout = make_run(tmp_path / "r1", generator.state_dict(), cfg)
    epoch_file = layout.epoch_ckpt(6)
    epoch_file.write_bytes(layout.best.read_bytes())
    result = export_best(epoch_file)
    assert result.path == layout.exports_dir / "r1_e6_s120.pth"  # run name and exports/ from the layout


# ------------------------------------------------------------------------------------- bad input
def test_bad_sources(tmp_path):
    cfg = tiny_config()
    generator = build_generator("v2", **TINY, seed=0)
    run = tmp_path / "run"
    RunLayout(run).ckpt_dir.mkdir(parents=True)
    torch.save(run_state(generator.state_dict(), cfg, epoch=1, step=2, value=1.0), RunLayout(run).last)
    with pytest.raises(GsvError, match=r"no best checkpoint .*only last\.pt exists; it is never exported"):
        export_best(run)
    with pytest.raises(GsvError, match="is not a run folder"):
        export_best(tmp_path)
    with pytest.raises(GsvError, match="no such run folder or checkpoint"):
        export_best(tmp_path / "nothing")

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(RunLayout(run).last.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        export_best(corrupt)

    d_file = tmp_path / "D_10.pth"
    write_training_checkpoint(d_file, {"discriminators.0.conv_post.bias": torch.zeros(1)}, iteration=1)
    with pytest.raises(GsvError, match="discriminator weights"):
        export_best(d_file)

    good = RunLayout(run).last
    with pytest.raises(GsvError, match=r"must end in \.pth"):
        export_best(good, out=tmp_path / "x.safetensors")
    with pytest.raises(GsvError, match="invalid export name"):
        export_best(good, name="a/b")
    with pytest.raises(GsvError, match="unknown export format"):
        export_best(good, fmt="onnx")  # type: ignore[arg-type]

    # weights that do not fit the config they carry are refused (nothing written)
    bad_cfg = cfg.model_copy(deep=True)
    bad_cfg.model.gin_channels = 24
    torch.save(
        run_state(generator.state_dict(), bad_cfg, epoch=1, step=2, value=1.0), tmp_path / "mismatch.pt"
    )
    with pytest.raises(CheckpointError, match="shape mismatches"):
        export_best(tmp_path / "mismatch.pt", out=tmp_path / "m.pth")
    assert not (tmp_path / "m.pth").exists()


def test_force_overwrites(tmp_path):
    cfg = tiny_config()
    layout = make_run(tmp_path / "run", build_generator("v2", **TINY, seed=0).state_dict(), cfg)
    first = export_best(layout.root)
    torch.save(
        run_state(build_generator("v2", **TINY, seed=5).state_dict(), cfg, epoch=6, step=120, value=0.5),
        layout.best,
    )
    second = export_best(layout.root, force=True)
    assert second.path == first.path and second.sha256 != first.sha256
    assert json.loads(second.manifest_path.read_text())["sha256"] == second.sha256


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_export_best_and_inspect(tmp_path):
    cfg = tiny_config()
    layout = make_run(tmp_path / "run", build_generator("v2", **TINY, seed=0).state_dict(), cfg)
    runner = CliRunner()
    res = runner.invoke(app, ["export-best", str(layout.root), "--name", "demo", "-q"])
    assert res.exit_code == 0, res.output
    out = layout.exports_dir / "demo_e6_s120.pth"
    assert f"wrote {out}" in res.output and "best validation loss 0.75" in res.output

    res = runner.invoke(app, ["inspect", str(out)])
    assert res.exit_code == 0, res.output
    assert "kind:        official-export (generator)" in res.output
    assert "info:        6epoch_120iteration" in res.output
    assert "loads into our generator (strict): yes" in res.output

    res = runner.invoke(app, ["inspect", str(layout.best), "--no-load"])
    assert res.exit_code == 0, res.output
    assert "kind:        run-checkpoint (generator)" in res.output
    assert "keys:        461 (float32 x461)" in res.output

    res = runner.invoke(app, ["export-best", str(layout.root), "--name", "demo"])
    assert res.exit_code == 1 and "already exists" in res.output
    res = runner.invoke(app, ["export-best", str(layout.root), "--format", "onnx"])
    assert res.exit_code == 2
    bad = tmp_path / "bad.pth"
    bad.write_text("not weights")
    res = runner.invoke(app, ["inspect", str(bad)])
    assert res.exit_code == 1 and "error:" in res.output and "not a PyTorch checkpoint" in res.output
