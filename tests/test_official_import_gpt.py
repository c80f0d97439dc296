"""`--from-official` for the GPT stage: `6-name2semantic.tsv` and `3-bert/` in the official formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gptsovits_train.config import Config
from gptsovits_train.data.manifest import read_manifest
from gptsovits_train.data.official_import import import_official, parse_name2semantic
from gptsovits_train.features.hubert import expected_frames
from gptsovits_train.layout import DatasetLayout
from tests.features_helpers import lj_waves_32k
from tests.test_official_import import NotATensor, build_exp


@pytest.fixture(scope="module")
def raw_waves():
    return lj_waves_32k(4, max_seconds=2.0, mix=False)


def add_gpt_files(made: dict, *, merged: bool = True) -> dict[str, np.ndarray]:
    """Official 1a/1c outputs: codes for every clip (tsv as webui merges it), BERT for the zh clips
    (first fp16 as on a half GPU, then fp32 as on a CPU)."""
    exp: Path = made["exp"]
    rng = np.random.default_rng(1)
    codes = {}
    lines = []
    (exp / "3-bert").mkdir()
    for i, (name, truth) in enumerate(sorted(made["truth"].items())):
        n = expected_frames(len(truth["pcm"])) // 2
        codes[name] = rng.integers(0, 1024, n)
        lines.append(f"{name}\t{' '.join(str(c) for c in codes[name])}")
        if truth["lang"] == "zh":
            bert = torch.from_numpy(rng.standard_normal((1024, len(truth["phones"]))).astype(np.float32))
            torch.save(bert.half() if i == 0 else bert, exp / "3-bert" / f"{name}.pt")
    if merged:
        (exp / "6-name2semantic.tsv").write_text(
            "item_name\tsemantic_audio\n" + "\n".join(lines) + "\n", encoding="utf-8"
        )
    else:  # the per-process part files 3-get-semantic.py writes before webui merges them
        (exp / "6-name2semantic-0.tsv").write_text("\n".join(lines[:2]), encoding="utf-8")
        (exp / "6-name2semantic-1.tsv").write_text("\n".join(lines[2:]), encoding="utf-8")
    return codes


@pytest.mark.parametrize("merged", [True, False])
def test_codes_and_bert_are_imported(tmp_path, raw_waves, merged):
    made = build_exp(tmp_path, raw_waves)
    codes = add_gpt_files(made, merged=merged)
    out = tmp_path / "ds"
    report = import_official(made["exp"], out, Config())
    assert not report.skipped and not report.warnings
    layout = DatasetLayout(out)
    clips = read_manifest(layout.manifest)
    assert len(clips) == len(raw_waves)
    for clip in clips:
        name = clip.extra["official_name"]
        got = np.load(out / (clip.semantic or "missing"))
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, codes[name])
        bert_pt = made["exp"] / "3-bert" / f"{name}.pt"
        if clip.language == "zh":
            want = torch.load(bert_pt, weights_only=True).float().numpy()
            arr = np.load(out / (clip.bert or "missing"))
            assert arr.dtype == np.float16 and arr.shape == (1024, len(clip.phone_ids or []))
            np.testing.assert_allclose(arr.astype(np.float32), want, rtol=1e-3, atol=1e-3)
        else:
            assert clip.bert is None and not bert_pt.exists()
    gpt = json.loads(layout.report_json.read_text())["gpt"]
    assert gpt["clips_with_semantic"] == 4 and gpt["clips_with_bert"] == 2
    assert json.loads(layout.semantic_stamp.read_text())["model"].startswith("official:")


def test_bad_gpt_files_cost_only_their_part(tmp_path, raw_waves):
    made = build_exp(tmp_path, raw_waves)
    exp = made["exp"]
    codes = add_gpt_files(made)
    names = sorted(made["truth"])  # 0, 2: zh; 1, 3: en
    tsv = (exp / "6-name2semantic.tsv").read_text(encoding="utf-8").splitlines()
    tsv[1] = f"{names[0]}\t{' '.join(str(c) for c in codes[names[0]][:-3])}"  # 3 codes short
    tsv[2] = f"{names[1]}\t1 2\t3"  # 3 fields
    tsv.append("ghost.wav\t1 2 3")
    tsv.append("neg.wav\t1 -2 3")
    (exp / "6-name2semantic.tsv").write_text("\n".join(tsv) + "\n", encoding="utf-8")
    torch.save({"obj": NotATensor()}, exp / "3-bert" / f"{names[0]}.pt")  # the safe loader refuses it
    torch.save(torch.zeros(1024, 3), exp / "3-bert" / f"{names[2]}.pt")  # wrong phone count
    report = import_official(exp, tmp_path / "ds", Config())
    assert len(report.clips) == 4  # every clip keeps its SoVITS data
    by_name = {c.extra["official_name"]: c for c in report.clips}
    assert by_name[names[0]].semantic is None and by_name[names[0]].bert is None
    assert by_name[names[1]].semantic is None
    assert by_name[names[2]].semantic is not None and by_name[names[2]].bert is None
    assert by_name[names[3]].semantic is not None
    skipped = {s.source: s.reason for s in report.skipped}
    assert skipped == {
        "6-name2semantic.tsv:3": "3 tab-separated fields, expected 2",
        "6-name2semantic.tsv:7": "semantic codes of neg.wav empty or outside [0, 1024)",
    }
    notes = {(w.source, w.message) for w in report.warnings}
    want_n = len(codes[names[0]])
    assert (
        names[0],
        f"6-name2semantic.tsv: {want_n - 3} semantic codes, the clip's HuBERT frames give "
        f"{want_n}; codes left out (the GPT stage skips this clip)",
    ) in notes
    assert any(s == names[0] and m.startswith(f"cannot load 3-bert/{names[0]}.pt") for s, m in notes)
    assert any(s == names[2] and "has shape (1024, 3), expected (1024, 9)" in m for s, m in notes)
    assert ("ghost.wav", "in 6-name2semantic.tsv but not in 2-name2text.txt; ignored") in notes
    assert not (tmp_path / "ds" / "semantic" / f"{Path(names[0]).stem}.npy").exists()


def test_tsv_parser_reads_the_official_file(tmp_path, reference_dir):
    """The tsv text the official 3-get-semantic.py + webui merge wrote for the semantic fixture."""
    with np.load(reference_dir / "semantic_fixture_v2.npz") as fx:
        meta = json.loads(bytes(fx["meta_json"]))
        want = {c: fx[f"{c}/codes"] for c in ("clip0.wav", "clip1.wav")}
    (tmp_path / "6-name2semantic.tsv").write_text(meta["tsv"], encoding="utf-8")
    codes, skipped, warnings = parse_name2semantic(tmp_path)
    assert not skipped and not warnings and set(codes) == set(want)
    for name, arr in want.items():
        np.testing.assert_array_equal(codes[name], arr)


def test_folder_without_gpt_files_imports_as_before(tmp_path, raw_waves):
    made = build_exp(tmp_path, raw_waves)
    report = import_official(made["exp"], tmp_path / "ds", Config())
    assert all(c.semantic is None and c.bert is None for c in report.clips)
    assert "gpt" not in json.loads((tmp_path / "ds" / "report.json").read_text())
    assert not (tmp_path / "ds" / "semantic").exists()
