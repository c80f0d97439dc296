"""Loading official GPT-SoVITS files safely (issue 3 §4): restricted unpickling, headers, version rules,
training checkpoints, strict key reports and clear errors for bad files."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import re
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from gptsovits_train.checkpoints import (
    EXPORT_DROPPED_PATTERNS,
    OfficialHParams,
    compare_state_dicts,
    detect_sovits_version,
    infer_version_from_weights,
    load_bytes,
    load_state_dict_strict,
    load_torch_file,
    loader_version,
    read_run_checkpoint,
    read_weights,
    sniff_file,
    version_from_header_and_size,
)
from gptsovits_train.checkpoints import version as version_mod
from gptsovits_train.config import Config
from gptsovits_train.errors import CheckpointError
from tests.official_files_helpers import (
    ImportSpy,
    official_config,
    official_export_bytes,
    read_manifest,
    write_official_export,
    write_training_checkpoint,
)


def small_generator_state(rows: int = 732) -> OrderedDict[str, torch.Tensor]:
    """A few generator-like keys (not a full model): enough for format tests."""
    g = torch.Generator().manual_seed(0)
    return OrderedDict(
        [
            ("enc_p.text_embedding.weight", torch.randn(rows, 4, generator=g)),
            ("enc_p.ssl_proj.weight", torch.randn(4, 6, 1, generator=g)),
            ("enc_q.pre.weight", torch.randn(4, 3, 1, generator=g)),
            ("dec.conv_pre.weight", torch.randn(8, 4, 7, generator=g)),
            ("quantizer.vq.layers.0._codebook.inited", torch.ones(1)),
        ]
    )


# ------------------------------------------------------------------------------ official exports
@pytest.mark.parametrize("version", ["v2", "v2Pro", "v2ProPlus"])
def test_official_export_loads_without_foreign_code(tmp_path, reference_dir, version):
    state = small_generator_state()
    config = official_config(reference_dir, version)
    path = write_official_export(tmp_path / "voice_e8_s100.pth", state, config, version=version)
    expected_head = {"v2": b"PK", "v2Pro": b"05", "v2ProPlus": b"06"}[version]
    assert path.read_bytes()[:2] == expected_head
    assert "utils" not in sys.modules

    # plain weights_only loading cannot read it: the pickled utils.HParams class is foreign
    raw = path.read_bytes()
    with pytest.raises(pickle.UnpicklingError, match=r"utils\.HParams"):
        torch.load(io.BytesIO(b"PK" + raw[2:]), weights_only=True)

    with ImportSpy("utils") as spy:
        wf = read_weights(path)
    assert spy.attempts == []
    assert "utils" not in sys.modules
    assert wf.kind == "official-export" and wf.role == "generator"
    assert wf.file.container == ("zip" if version == "v2" else "headered-zip")
    assert list(wf.state) == [k for k in state if "enc_q" not in k]
    assert all(t.dtype == torch.float16 for t in wf.state.values())
    torch.testing.assert_close(wf.state["dec.conv_pre.weight"], state["dec.conv_pre.weight"].half())
    assert wf.info == "8epoch_100iteration" and (wf.epoch, wf.step) == (8, 100)
    # config came back as plain nested dicts equal to what was pickled
    assert type(wf.config) is dict and type(wf.config["model"]) is dict
    assert wf.config == config


def test_hparams_alias_is_dict_like_and_state_checked():
    hp = OfficialHParams()
    hp.__setstate__({"model": {"gin_channels": 512}})
    assert hp.model == {"gin_channels": 512} and hp["model"]["gin_channels"] == 512
    with pytest.raises(AttributeError):
        _ = hp.missing
    with pytest.raises(pickle.UnpicklingError):
        hp.__setstate__({1: "not a string key"})
    with pytest.raises(pickle.UnpicklingError):
        hp.__setstate__(["not", "a", "dict"])


class _Evil:
    """Pickles as a call to `func(*args)` (what a malicious checkpoint does)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _payloads(marker: Path):
    cmd = f"touch {marker}"
    return {
        "os.system": _Evil(os.system, cmd),
        "builtins.eval": _Evil(builtins.eval, f"__import__('os').system({cmd!r})"),
        "subprocess.Popen": _Evil(subprocess.Popen, ["touch", str(marker)]),
    }


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen"])
@pytest.mark.parametrize("variant", ["zip", "header05", "legacy-pickle", "inside-config"])
def test_code_running_pickles_are_refused(tmp_path, name, variant, reference_dir):
    marker = tmp_path / "pwned"
    evil = _payloads(marker)[name]
    if variant == "legacy-pickle":
        data = pickle.dumps({"weight": evil}, protocol=2)
    else:
        payload = {"weight": {"x": torch.zeros(2)}, "config": {"model": evil}, "info": "1epoch_1iteration"}
        if variant != "inside-config":
            payload = {"weight": evil, "info": "x"}
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        data = buffer.getvalue()
        if variant == "header05":
            data = b"05" + data[2:]
    path = tmp_path / "evil.pth"
    path.write_bytes(data)
    for reader in (load_torch_file, read_weights):
        with pytest.raises(CheckpointError, match="refused to load") as err:
            reader(path)
        assert str(path) in str(err.value)
    assert not marker.exists(), "the payload ran"


# --------------------------------------------------------------------------- training checkpoints
def test_official_training_checkpoints(tmp_path):
    state = small_generator_state()
    g_path = write_training_checkpoint(tmp_path / "logs" / "exp" / "logs_s2_v2" / "G_1234.pth", state, 7)
    wf = read_weights(g_path)
    assert (wf.kind, wf.role, wf.epoch, wf.step) == ("official-training", "generator", 7, 1234)
    assert list(wf.state) == list(state) and wf.state["enc_p.text_embedding.weight"].dtype == torch.float32
    assert wf.extra["learning_rate"] == 1e-4 and wf.extra["has_optimizer"]

    latest = write_training_checkpoint(tmp_path / "G_233333333333.pth", state, 3)
    assert read_weights(latest).step is None  # the "save latest" name carries no step

    d_state = {
        "discriminators.0.convs.0.weight_g": torch.ones(16, 1, 1),
        "discriminators.1.conv_post.bias": torch.ones(1),
    }
    d_path = write_training_checkpoint(tmp_path / "D_1234.pth", d_state, 7)
    wf_d = read_weights(d_path)
    assert (wf_d.kind, wf_d.role) == ("official-training", "discriminator")


def test_pretrained_file_keeps_enc_q(tmp_path):
    state = {k: v.half() for k, v in small_generator_state().items()}
    path = tmp_path / "s2G2333k.pth"
    torch.save({"weight": state}, path)
    wf = read_weights(path)
    assert (wf.kind, wf.role, wf.config, wf.info) == ("pretrained", "generator", None, None)
    assert "enc_q.pre.weight" in wf.state


def _run_state(state, epoch=3, step=30, value=1.5):
    return {
        "format": "gsv-train-checkpoint",
        "format_version": 1,
        "tool_version": "0.1.0",
        "generator": dict(state),
        "discriminator": {"discriminators.0.conv_post.bias": torch.zeros(1)},
        "epoch": epoch,
        "step": step,
        "metrics": {"val/mel": value},
        "best": {"epoch": epoch, "step": step, "metric": "val/mel", "value": value},
        "config": Config().to_dict(),
    }


def test_run_checkpoint_reading(tmp_path):
    path = tmp_path / "best.pt"
    torch.save(_run_state(small_generator_state()), path)
    run = read_run_checkpoint(path)
    assert (run.epoch, run.step, run.best["value"], run.metrics["val/mel"]) == (3, 30, 1.5, 1.5)
    assert run.config == Config()
    wf = read_weights(path)
    assert (wf.kind, wf.epoch, wf.step, wf.info) == ("run-checkpoint", 3, 30, "3epoch_30iteration")

    bad = _run_state(small_generator_state())
    bad["format_version"] = 99
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match="format_version 99"):
        read_run_checkpoint(path)
    bad = _run_state(small_generator_state())
    bad["config"]["train"]["batch_sizee"] = 3
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match="batch_sizee"):
        read_run_checkpoint(path)
    torch.save({"weight": {}}, path)
    with pytest.raises(CheckpointError, match="not a gsv-train run checkpoint"):
        read_run_checkpoint(path)


# ------------------------------------------------------------------------------ version detection
def test_header_table_matches_official(shared_dir):
    """Against the `head2version` table of the facts document (written from the official code), not a
    copy of our own table."""
    facts = (shared_dir / "docs" / "gptsovits-facts.md").read_text(encoding="utf-8")
    section = facts[facts.index("look them up in `head2version`") :]
    rows = re.findall(r"^\s*\|\s*(0\d)\s*\|\s*(v[\w]+)( LoRA)?\s*\|", section, flags=re.M)
    assert [r[0] for r in rows] == ["00", "01", "02", "03", "04", "05", "06"]
    for head, model, lora in rows:
        got = version_from_header_and_size(head.encode(), 10)
        assert (got.model_version, got.is_lora) == (model, bool(lora)), head
    with pytest.raises(CheckpointError, match="unknown SoVITS file header"):
        version_from_header_and_size(b"07", 10)


def test_size_thresholds_exactly():
    kib, mib = 1024, 1024 * 1024
    assert version_from_header_and_size(b"PK", 82978 * kib - 1).model_version == "v1"
    assert version_from_header_and_size(b"PK", 82978 * kib).model_version == "v2"
    assert version_from_header_and_size(b"PK", 700 * mib - 1).model_version == "v2"
    assert version_from_header_and_size(b"PK", 700 * mib).as_tuple() == ("v2", "v3", False)


@pytest.mark.parametrize("version", ["v1", "v2", "v2Pro", "v2ProPlus"])
def test_detection_reproduces_official_results_on_reference_facts(reference_dir, version):
    """The manifests record what the official function said about real official exports."""
    facts = read_manifest(reference_dir, version)["summary"]["official_export_of_this_random_init"]
    head = bytes.fromhex(facts["first_8_bytes_hex"])
    got = version_from_header_and_size(head, facts["file_size_bytes"])
    assert list(got.as_tuple()) == facts["detected_by_get_sovits_version_from_path_fast"]


def test_detect_on_files_uses_header_size_and_md5(tmp_path, monkeypatch):
    sparse = tmp_path / "big.pth"
    with open(sparse, "wb") as fh:
        fh.write(b"PK\x03\x04")
        fh.truncate(84_998_826)  # the official v2 export size, sparse on disk
    assert detect_sovits_version(sparse).as_tuple() == ("v2", "v2", False)
    with open(sparse, "r+b") as fh:
        fh.truncate(84_923_562)  # the official v1 export size
    assert detect_sovits_version(sparse).model_version == "v1"
    pro = tmp_path / "pro.pth"
    pro.write_bytes(b"05\x03\x04" + b"\0" * 100)
    assert detect_sovits_version(pro).model_version == "v2Pro"

    # rule 1: md5 of the first 8192 bytes wins over header and size
    import hashlib

    digest = hashlib.md5(pro.read_bytes()[:8192]).hexdigest()
    monkeypatch.setitem(version_mod.PRETRAINED_MD5, digest, ("v2", "v2", False, "test pretrained"))
    got = detect_sovits_version(pro)
    assert got.model_version == "v2" and "md5" in got.rule

    for bad, msg in ((tmp_path / "none.pth", "no such file"), (tmp_path / "empty.pth", "empty file")):
        if msg == "empty file":
            bad.write_bytes(b"")
        with pytest.raises(CheckpointError, match=msg):
            detect_sovits_version(bad)


def test_loader_refinement_and_shape_inference(reference_dir):
    v1_like = small_generator_state(rows=322)
    v2_like = small_generator_state(rows=732)
    by_size_v1 = version_from_header_and_size(b"PK", 100)
    assert loader_version(by_size_v1, v2_like) == "v2"  # a small v2 file is still v2 for the loaders
    assert loader_version(version_from_header_and_size(b"PK", 84_998_826), v1_like) == "v1"
    assert loader_version(version_from_header_and_size(b"05", 10), v2_like) == "v2Pro"
    for version in ("v1", "v2", "v2Pro", "v2ProPlus"):
        shapes = {
            k: torch.empty(0).new_empty(v["shape"], device="meta")
            for k, v in read_manifest(reference_dir, version)["state_dict"].items()
        }
        assert infer_version_from_weights(shapes) == version


# ------------------------------------------------------------------------------ strict key reports
class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc_p = nn.Linear(3, 4)
        self.enc_q = nn.Linear(3, 2)
        self.register_buffer("codebook", torch.zeros(5))


def test_compare_reports_every_kind_of_difference():
    model = _Tiny()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    del state["enc_q.bias"]
    state["enc_p.weight"] = torch.zeros(4, 5)
    state["extra.weight"] = torch.zeros(1)
    report = compare_state_dicts(model.state_dict(), state)
    assert report.missing == ["enc_q.bias"]
    assert report.unexpected == ["extra.weight"]
    assert report.mismatched == [("enc_p.weight", (4, 3), (4, 5))]
    assert not report.ok
    for part in (
        "1 missing [enc_q.bias]",
        "1 unexpected [extra.weight]",
        "enc_p.weight: model (4, 3) vs file (4, 5)",
    ):
        assert part in report.summary()
    with pytest.raises(CheckpointError, match="does not match"):
        load_state_dict_strict(model, state)


def test_strict_load_with_allowed_missing_enc_q():
    model = _Tiny()
    before = model.enc_q.weight.detach().clone()
    state = {k: torch.full_like(v, 0.5).half() for k, v in model.state_dict().items() if "enc_q" not in k}
    with pytest.raises(CheckpointError, match="2 missing"):
        load_state_dict_strict(_Tiny(), state)
    report = load_state_dict_strict(model, state, allow_missing=EXPORT_DROPPED_PATTERNS)
    assert report.ok and sorted(report.allowed_missing) == ["enc_q.bias", "enc_q.weight"]
    assert model.enc_p.weight.dtype == torch.float32 and torch.all(model.enc_p.weight == 0.5)
    assert torch.equal(model.enc_q.weight, before)  # allowed-missing keys keep the model's values
    # allowing enc_q does not excuse a shape mismatch elsewhere
    state["codebook"] = torch.zeros(6)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_state_dict_strict(model, state, allow_missing=EXPORT_DROPPED_PATTERNS)


# ------------------------------------------------------------------------------------- bad files
def _safetensors_bytes() -> bytes:
    from safetensors.torch import save

    return save({"a": torch.zeros(2)})


def _random_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("notes.txt", "hello")
    return buffer.getvalue()


def _torch_zip(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"hello, this is a text file\n", "not a PyTorch checkpoint .*text 'hello, t'"),
        (bytes(range(256)) * 4, "not a PyTorch checkpoint .*bytes"),
        ("random-zip", "corrupt or truncated"),
        ("safetensors", "safetensors file"),
        ("truncated", "corrupt or truncated"),
        ("truncated05", "corrupt or truncated"),
        ("header-only", "no zip follows"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path, content, message):
    good = _torch_zip({"weight": {"enc_p.x": torch.zeros(1000)}, "config": {}, "info": "1epoch_1iteration"})
    data = {
        "random-zip": _random_zip(),
        "safetensors": _safetensors_bytes(),
        "truncated": good[: len(good) // 2],
        "truncated05": b"05" + good[2 : len(good) // 2],
        "header-only": b"05",
    }.get(content, content)
    path = tmp_path / "bad.pth"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=message):
        load_torch_file(path)
    with pytest.raises(CheckpointError):
        read_weights(path) if content != "safetensors" else load_torch_file(path)


def test_wrong_content_errors(tmp_path):
    cases = {
        "list.pth": ([torch.zeros(1)], "holds a list"),
        "keys.pth": ({"foo": 1, "bar": 2}, "not a SoVITS weight file"),
        "weight-not-tensors.pth": ({"weight": {"a": 1}}, "non-tensor"),
        "unknown-model.pth": ({"weight": {"resnet.fc.weight": torch.zeros(1)}}, "neither SoVITS generator"),
    }
    for name, (obj, message) in cases.items():
        path = tmp_path / name
        torch.save(obj, path)
        with pytest.raises(CheckpointError, match=message):
            read_weights(path)
    with pytest.raises(CheckpointError, match="no such file"):
        read_weights(tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="not a file"):
        sniff_file(tmp_path)


def test_load_bytes_matches_file_loading(reference_dir):
    data = official_export_bytes(
        small_generator_state(), official_config(reference_dir, "v2Pro"), "1epoch_2iteration", "v2Pro"
    )
    assert data[:2] == b"05"
    loaded = load_bytes(data)
    assert loaded["info"] == "1epoch_2iteration" and isinstance(loaded["config"], OfficialHParams)
    assert loaded["config"].model.version == "v2Pro"


def test_safetensors_files(tmp_path):
    from safetensors.torch import save

    good = save({"enc_p.text_embedding.weight": torch.zeros(732, 4)}, metadata={"info": "2epoch_5iteration"})
    path = tmp_path / "w.safetensors"
    path.write_bytes(good)
    wf = read_weights(path)  # a foreign safetensors state dict is readable, but is not our export
    assert (wf.kind, wf.role, wf.epoch, wf.step) == ("state-dict", "generator", 2, 5)
    for name, data in (("truncated", good[:-20]), ("bad-header", good[:8] + b"{" + b"x" * (len(good) - 9))):
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match="corrupt safetensors file"):
            read_weights(path)
