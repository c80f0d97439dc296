"""download-pretrained: file list, resolution through a Hugging Face cache built here, reuse, offline
errors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gptsovits_train.cli import app
from gptsovits_train.errors import GsvError
from gptsovits_train.pretrained import (
    HF_REPO,
    RECORD_NAME,
    download_pretrained,
    find_pretrained,
    pretrained_files,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
V2_FILES = [
    "chinese-hubert-base/config.json",
    "chinese-hubert-base/preprocessor_config.json",
    "chinese-hubert-base/pytorch_model.bin",
    "gsv-v2final-pretrained/s2G2333k.pth",
    "gsv-v2final-pretrained/s2D2333k.pth",
]


def make_hf_cache(
    cache: Path, files: dict[str, bytes], commit: str = COMMIT, corrupt: str | None = None
) -> None:
    """The Hugging Face cache layout: blobs named by sha256, snapshot symlinks, refs/main -> commit.

    `corrupt`: that file's blob gets content that does not hash to its name.
    """
    repo = cache / ("models--" + HF_REPO.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs").mkdir(exist_ok=True)
    for rel, data in files.items():
        sha = hashlib.sha256(data).hexdigest()
        blob = repo / "blobs" / sha
        blob.write_bytes(data + b"!" if rel == corrupt else data)
        link = repo / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


def contents(paths: list[str]) -> dict[str, bytes]:
    return {p: f"content of {p}".encode() * 100 for p in paths}


def test_v2_file_list_is_the_official_one():
    """Paths from the official config.py (facts §4.4) and the HF repo layout."""
    assert [f.repo_path for f in pretrained_files("v2")] == V2_FILES
    assert [f.role for f in pretrained_files("v2")] == ["hubert"] * 3 + ["s2G", "s2D"]
    assert [f.repo_path for f in pretrained_files("v1", hubert=False)] == ["s2G488k.pth", "s2D488k.pth"]
    assert [f.repo_path for f in pretrained_files("v2ProPlus", hubert=False)] == [
        "v2Pro/s2Gv2ProPlus.pth",
        "v2Pro/s2Dv2ProPlus.pth",
        "sv/pretrained_eres2netv2w24s4ep4.ckpt",
    ]
    with pytest.raises(GsvError, match="unknown version"):
        pretrained_files("v3")


def test_download_from_cache_records_sha256(tmp_path):
    data = contents(V2_FILES)
    make_hf_cache(tmp_path / "cache", data)
    dest = tmp_path / "dest"
    assert find_pretrained(dest) is None
    got = download_pretrained(dest, "v2", cache_dir=tmp_path / "cache", local_files_only=True)
    assert [f.repo_path for f in got.files] == V2_FILES
    assert not any(f.reused for f in got.files)
    record = json.loads((dest / RECORD_NAME).read_text())
    assert record["repo"] == HF_REPO and record["versions"] == ["v2"]
    for rel, payload in data.items():
        assert (dest / rel).read_bytes() == payload
        entry = record["files"][rel]
        assert entry["sha256"] == hashlib.sha256(payload).hexdigest()
        assert entry["size"] == len(payload) and entry["revision"] == COMMIT
    assert got.hubert_dir == dest / "chinese-hubert-base"
    assert got.s2g == dest / "gsv-v2final-pretrained/s2G2333k.pth"
    found = find_pretrained(dest)
    assert found is not None and found.s2d == dest / "gsv-v2final-pretrained/s2D2333k.pth"


def test_hf_hub_offline_env_is_respected(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    make_hf_cache(tmp_path / "cache", contents(V2_FILES))
    got = download_pretrained(tmp_path / "dest", "v2", cache_dir=tmp_path / "cache")
    assert len(got.files) == 5


def test_files_in_dest_are_reused_without_the_hub(tmp_path, monkeypatch):
    data = contents(V2_FILES)
    make_hf_cache(tmp_path / "cache", data)
    dest = tmp_path / "dest"
    download_pretrained(dest, "v2", cache_dir=tmp_path / "cache", local_files_only=True)

    import huggingface_hub

    def no_hub(*a, **k):
        raise AssertionError("the hub must not be asked for files already in dest")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    again = download_pretrained(dest, "v2", cache_dir=tmp_path / "cache", local_files_only=True)
    assert all(f.reused for f in again.files)
    monkeypatch.undo()

    # a damaged file in dest (same size, other bytes) is fetched again from the cache
    bad = dest / "gsv-v2final-pretrained/s2G2333k.pth"
    bad.write_bytes(b"x" * bad.stat().st_size)
    again = download_pretrained(dest, "v2", cache_dir=tmp_path / "cache", local_files_only=True)
    assert {f.repo_path for f in again.files if not f.reused} == {"gsv-v2final-pretrained/s2G2333k.pth"}
    assert bad.read_bytes() == data["gsv-v2final-pretrained/s2G2333k.pth"]


def test_offline_and_not_cached_is_one_clear_line(tmp_path):
    make_hf_cache(tmp_path / "cache", contents(V2_FILES[:3]))  # HuBERT only: G and D are missing
    with pytest.raises(GsvError) as err:
        download_pretrained(tmp_path / "dest", "v2", cache_dir=tmp_path / "cache", local_files_only=True)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(
        "cannot get gsv-v2final-pretrained/s2G2333k.pth from lj1995/GPT-SoVITS: offline mode"
    )
    assert str(tmp_path / "cache") in msg
    # what was fetched before the failure is recorded and reused next time
    record = json.loads((tmp_path / "dest" / RECORD_NAME).read_text())
    assert set(record["files"]) == set(V2_FILES[:3])


def test_corrupt_cached_blob_is_refused(tmp_path):
    make_hf_cache(tmp_path / "cache", contents(V2_FILES), corrupt="gsv-v2final-pretrained/s2D2333k.pth")
    with pytest.raises(GsvError, match="corrupt"):
        download_pretrained(tmp_path / "dest", "v2", cache_dir=tmp_path / "cache", local_files_only=True)
    assert not (tmp_path / "dest" / "gsv-v2final-pretrained/s2D2333k.pth").exists()


def test_cli_download_and_offline_error(tmp_path):
    runner = CliRunner()
    make_hf_cache(tmp_path / "cache", contents(V2_FILES))
    args = ["download-pretrained", "--dest", str(tmp_path / "d"), "--cache-dir", str(tmp_path / "cache")]
    res = runner.invoke(app, [*args, "--offline", "--no-gpt", "-q"])
    assert res.exit_code == 0, res.output
    assert "--hubert " + str(tmp_path / "d" / "chinese-hubert-base") in res.output
    assert res.output.count("sha256") == 5

    empty = ["--dest", str(tmp_path / "e"), "--cache-dir", str(tmp_path / "empty")]
    v1_only = ["--version", "v1", "--offline", "--no-gpt", "-q"]
    res = runner.invoke(app, ["download-pretrained", *empty, *v1_only])
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot get chinese-hubert-base/config.json")

    res = runner.invoke(app, ["download-pretrained", "--version", "v9"])
    assert res.exit_code == 2
