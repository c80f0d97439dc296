"""GPT weight files: strict safe loading of official/pretrained files and the official export format."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch

from gptsovits_train.checkpoints.gpt_files import (
    gpt_export_name,
    load_gpt_weights_into,
    read_gpt_weights,
    write_gpt_export,
)
from gptsovits_train.errors import CheckpointError, GsvError
from gptsovits_train.models.t2s import T2SModelConfig, Text2SemanticDecoder
from tests.t2s_helpers import TINY, load_fixture


def _official_like(path: Path, state: dict[str, torch.Tensor], **extra: Any) -> Path:
    """A file shaped like the official pretrained s1 / export (OrderedDict, 'model.' keys, fp16)."""
    weight = OrderedDict((f"model.{k}", v.half()) for k, v in state.items())
    torch.save(
        {"weight": weight, "config": {"model": TINY.to_official(), "data": {"max_sec": 54}}, **extra}, path
    )
    return path


def test_official_fixture_state_loads_strictly_as_pretrained(reference_dir: Path, tmp_path: Path) -> None:
    fx = load_fixture(reference_dir)
    path = tmp_path / "pretrained.ckpt"
    torch.save({"weight": fx["state"], "config": fx["config"]}, path)  # fp32, as the official module holds it
    model = Text2SemanticDecoder(T2SModelConfig.from_official(fx["config"]["model"]))
    wf = load_gpt_weights_into(model, path)
    assert wf.kind == "pretrained" and wf.version == "v2" and wf.epoch is None
    for k, v in model.state_dict().items():
        assert torch.equal(v, fx["state"][f"model.{k}"])


def test_fp16_file_loads_into_fp32_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = Text2SemanticDecoder(TINY)
    path = _official_like(tmp_path / "s1.ckpt", src.state_dict(), info="GPT-e3")
    dst = Text2SemanticDecoder(TINY)
    wf = load_gpt_weights_into(dst, path)
    assert wf.kind == "official-export" and wf.epoch == 3 and wf.dtypes == ["float16"]
    for k, v in dst.state_dict().items():
        assert v.dtype == torch.float32
        assert torch.equal(v, src.state_dict()[k].half().float())


def test_missing_prefix_missing_key_and_wrong_shape_are_refused(tmp_path: Path) -> None:
    state = Text2SemanticDecoder(TINY).state_dict()
    no_prefix = tmp_path / "noprefix.ckpt"
    torch.save({"weight": {k: v.half() for k, v in state.items()}}, no_prefix)
    with pytest.raises(CheckpointError, match=r"'model\.' prefix"):
        read_gpt_weights(no_prefix)

    missing = dict(state)
    missing.pop("ar_predict_layer.weight")
    with pytest.raises(CheckpointError, match="1 missing"):
        load_gpt_weights_into(Text2SemanticDecoder(TINY), _official_like(tmp_path / "m.ckpt", missing))

    bigger = Text2SemanticDecoder(T2SModelConfig(embedding_dim=32, hidden_dim=32, head=2, n_layer=1))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_gpt_weights_into(bigger, _official_like(tmp_path / "s.ckpt", state))


def test_v1_is_told_by_phoneme_vocab(tmp_path: Path) -> None:
    v1 = Text2SemanticDecoder(
        T2SModelConfig(embedding_dim=16, hidden_dim=16, head=2, n_layer=1, phoneme_vocab_size=512)
    )
    assert read_gpt_weights(_official_like(tmp_path / "v1.ckpt", v1.state_dict())).version == "v1"


def test_lightning_checkpoint_and_sovits_file_get_clear_errors(tmp_path: Path) -> None:
    lightning = tmp_path / "epoch=0-step=6.ckpt"
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6.6"}, lightning)
    with pytest.raises(CheckpointError, match="Lightning training checkpoint"):
        read_gpt_weights(lightning)
    sovits = tmp_path / "sovits.pth"
    torch.save({"weight": {"enc_p.ssl_proj.weight": torch.zeros(2)}, "info": "1epoch_2iteration"}, sovits)
    with pytest.raises(CheckpointError, match="no GPT"):
        read_gpt_weights(sovits)


def test_export_has_the_official_format(tmp_path: Path, reference_dir: Path) -> None:
    torch.manual_seed(1)
    model = Text2SemanticDecoder(TINY)
    config = {"model": TINY.to_official(), "data": {"max_sec": 54}, "train": {"epochs": 2}}
    target = tmp_path / gpt_export_name("voice", 7)
    assert target.name == "voice-e7.ckpt"
    res = write_gpt_export(target, model.state_dict(), config, epoch=7, step=42, best={"val_loss": 1.5})
    assert target.read_bytes()[:2] == b"PK"
    loaded = torch.load(target, map_location="cpu", weights_only=True)
    assert list(loaded) == ["weight", "config", "info"]
    assert loaded["info"] == "GPT-e7"
    assert type(loaded["config"]) is dict and loaded["config"]["model"]["phoneme_vocab_size"] == 732
    weight = loaded["weight"]
    assert all(k.startswith("model.") for k in weight)
    assert all(v.dtype == torch.float16 for v in weight.values())
    for k, v in model.state_dict().items():
        assert torch.equal(weight[f"model.{k}"], v.half())
    manifest = json.loads(res.manifest_path.read_text())
    assert manifest["export_keys"] == list(weight)
    assert manifest["epoch"] == 7 and manifest["step"] == 42 and manifest["best"] == {"val_loss": 1.5}
    import hashlib

    assert manifest["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    # the exported file loads back strictly (as the official inference does)
    again = Text2SemanticDecoder(TINY)
    assert read_gpt_weights(target).kind == "official-export"
    load_gpt_weights_into(again, target)
    with pytest.raises(GsvError, match="already exists"):
        write_gpt_export(target, model.state_dict(), config, epoch=7, step=42)


def test_full_size_export_key_list_equals_official(reference_dir: Path) -> None:
    from gptsovits_train.checkpoints.gpt_files import gpt_export_weight

    official = json.loads((reference_dir / "t2s_v2_state.json").read_text())["export"]["weight_keys"]
    with torch.device("meta"):
        model = Text2SemanticDecoder(T2SModelConfig())
    keys = [f"model.{k}" for k in model.state_dict()]
    assert keys == official
    small = gpt_export_weight(Text2SemanticDecoder(TINY).state_dict())
    assert list(small) == [f"model.{k}" for k in Text2SemanticDecoder(TINY).state_dict()]


def test_inspect_recognises_gpt_files_v1_and_v2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gptsovits_train.cli import app

    v2 = _official_like(tmp_path / "voice-e3.ckpt", Text2SemanticDecoder(TINY).state_dict(), info="GPT-e3")
    v1_cfg = T2SModelConfig(embedding_dim=16, hidden_dim=16, head=2, n_layer=1, phoneme_vocab_size=512)
    v1 = tmp_path / "v1.ckpt"
    weight = {f"model.{k}": v.half() for k, v in Text2SemanticDecoder(v1_cfg).state_dict().items()}
    torch.save({"weight": weight, "config": {"model": v1_cfg.to_official()}}, v1)
    runner = CliRunner()
    r2 = runner.invoke(app, ["inspect", str(v2)])
    assert r2.exit_code == 0, r2.output
    assert "GPT (s1) official-export" in r2.output and "version:     v2" in r2.output
    assert "GPT-e3" in r2.output and "(strict): yes" in r2.output
    r1 = runner.invoke(app, ["inspect", str(v1), "--no-load"])
    assert r1.exit_code == 0, r1.output
    assert "version:     v1" in r1.output and "pretrained" in r1.output
    broken = tmp_path / "broken.ckpt"
    weight.pop("model.ar_predict_layer.weight")
    torch.save({"weight": weight, "config": {"model": v1_cfg.to_official()}}, broken)
    rb = runner.invoke(app, ["inspect", str(broken)])
    assert rb.exit_code == 1 and "1 missing" in rb.output
