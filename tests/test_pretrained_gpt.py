"""download-pretrained --gpt: the s1 file and chinese-roberta-wwm-ext-large through a local HF cache."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gptsovits_train.cli import app
from gptsovits_train.errors import GsvError
from gptsovits_train.pretrained import (
    RECORD_NAME,
    download_pretrained,
    find_bert,
    find_pretrained,
    find_s1,
    pretrained_files,
)
from tests.test_pretrained import V2_FILES, contents, make_hf_cache

S1_V2 = "gsv-v2final-pretrained/s1bert25hz-5kh-longer-epoch=12-step=369668.ckpt"
BERT = [
    "chinese-roberta-wwm-ext-large/config.json",
    "chinese-roberta-wwm-ext-large/tokenizer.json",
    "chinese-roberta-wwm-ext-large/pytorch_model.bin",
]


def test_gpt_file_names_are_the_official_ones():
    """Official config.py `pretrained_gpt_name` (facts §13) and the HF repo's BERT folder."""
    v2 = pretrained_files("v2", hubert=False, sovits=False, gpt=True)
    assert [f.repo_path for f in v2] == [S1_V2, *BERT]
    assert [f.role for f in v2] == ["s1", "bert", "bert", "bert"]
    assert pretrained_files("v1", hubert=False, sovits=False, gpt=True)[0].repo_path == (
        "s1bert25hz-2kh-longer-epoch=68e-step=50232.ckpt"
    )
    for version in ("v2Pro", "v2ProPlus"):
        (s1,) = [f for f in pretrained_files(version, hubert=False, sovits=False, gpt=True) if f.role == "s1"]
        assert s1.repo_path == "s1v3.ckpt"
    assert [f.repo_path for f in pretrained_files("v2")] == V2_FILES  # without gpt: unchanged


def test_download_with_gpt_from_cache(tmp_path):
    make_hf_cache(tmp_path / "cache", contents([*V2_FILES, S1_V2, *BERT]))
    dest = tmp_path / "dest"
    assert find_bert(dest) is None and find_s1(dest) is None
    got = download_pretrained(dest, "v2", cache_dir=tmp_path / "cache", local_files_only=True, gpt=True)
    assert [f.repo_path for f in got.files] == [*V2_FILES, S1_V2, *BERT]
    assert got.s1 == dest / S1_V2
    assert got.bert_dir == dest / "chinese-roberta-wwm-ext-large"
    assert (dest / S1_V2).read_bytes() == contents([S1_V2])[S1_V2]
    record = json.loads((dest / RECORD_NAME).read_text())
    assert record["files"][S1_V2]["role"] == "s1"
    assert {record["files"][b]["role"] for b in BERT} == {"bert"}
    assert find_bert(dest) == dest / "chinese-roberta-wwm-ext-large"
    assert find_s1(dest, "v2") == dest / S1_V2
    assert find_s1(dest, "v1") is None
    assert find_pretrained(dest) is not None
    # a BERT file of the wrong size is not "found"
    (dest / BERT[2]).write_bytes(b"short")
    assert find_bert(dest) is None
    with pytest.raises(GsvError, match="unknown version"):
        find_s1(dest, "v9")


def test_gpt_files_missing_offline_is_one_clear_line(tmp_path):
    make_hf_cache(tmp_path / "cache", contents(V2_FILES))
    with pytest.raises(GsvError) as err:
        download_pretrained(
            tmp_path / "d", "v2", cache_dir=tmp_path / "cache", local_files_only=True, gpt=True
        )
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(f"cannot get {S1_V2} from lj1995/GPT-SoVITS: offline mode")


def test_cli_gpt_flag(tmp_path):
    make_hf_cache(tmp_path / "cache", contents([*V2_FILES, S1_V2, *BERT]))
    args = ["download-pretrained", "--dest", str(tmp_path / "d"), "--cache-dir", str(tmp_path / "cache")]
    res = CliRunner().invoke(app, [*args, "--offline", "-q"])  # the GPT files are fetched by default
    assert res.exit_code == 0, res.output
    assert res.output.count("sha256") == 9
    assert "prepare.bert.model=" + str(tmp_path / "d" / "chinese-roberta-wwm-ext-large") in res.output
    assert str(tmp_path / "d" / S1_V2) in res.output
