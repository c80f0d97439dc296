"""Import of an official experiment folder built here in the official formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from gptsovits_train.config import Config
from gptsovits_train.data.manifest import read_manifest
from gptsovits_train.data.official_import import guess_language, import_official, parse_name2text
from gptsovits_train.errors import GsvError
from gptsovits_train.features import check_features, read_stamp
from gptsovits_train.features.hubert import expected_frames
from gptsovits_train.layout import DatasetLayout
from tests.features_helpers import lj_waves_32k

ZH = ("n i3 h ao3 , sh ir4 j ie4", "[2, 2, 1, 2, 2]", "你好，世界")
EN = ("HH AH0 L OW1 , W ER1 L D", "None", "hello, world")


class NotATensor:
    """Pickled into a .pt file: the weights_only loader must refuse it."""


@pytest.fixture(scope="module")
def raw_waves():
    return lj_waves_32k(6, max_seconds=2.5, mix=False)


def official_wav(raw: np.ndarray) -> np.ndarray:
    """`5-wav32k`: int16 of the loudness mix scaled by 32768 (official astype truncation)."""
    mix = raw / np.abs(raw).max() * (0.95 * 0.5 * 32768) + (0.5 * 32768) * raw
    return mix.astype(np.int16)


def build_exp(root: Path, raw_waves, *, extra_lines: tuple[str, ...] = ()) -> dict:
    """An official `logs/<exp>` folder; returns what each name should become."""
    exp = root / "logs" / "myvoice"
    (exp / "4-cnhubert").mkdir(parents=True)
    (exp / "5-wav32k").mkdir()
    rng = np.random.default_rng(0)
    lines, truth = [], {}
    for i, (stem, raw) in enumerate(raw_waves):
        name = f"{stem}.wav"
        pcm = official_wav(raw)
        sf.write(exp / "5-wav32k" / name, pcm, 32000, subtype="PCM_16")
        t = expected_frames(len(pcm))
        ssl = torch.from_numpy(rng.standard_normal((1, 768, t)).astype(np.float16))
        torch.save(ssl, exp / "4-cnhubert" / f"{name}.pt")
        phones, word2ph, norm = ZH if i % 2 == 0 else EN
        lines.append(f"{name}\t{phones}\t{word2ph}\t{norm}")
        truth[name] = {
            "pcm": pcm,
            "ssl": ssl,
            "phones": phones.split(" "),
            "norm": norm,
            "lang": "zh" if i % 2 == 0 else "en",
        }
    lines += list(extra_lines)
    (exp / "2-name2text.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"exp": exp, "truth": truth}


def test_import_builds_a_complete_dataset(tmp_path, raw_waves, reference_dir):
    made = build_exp(tmp_path, raw_waves)
    out = tmp_path / "ds"
    report = import_official(made["exp"], out, Config())
    layout = DatasetLayout(out)
    clips = read_manifest(layout.manifest)
    assert len(clips) == len(raw_waves) == report.n_clips and not report.skipped
    table = json.loads((reference_dir / "symbols_v2.json").read_text())["symbols"]
    for clip in clips:
        name = clip.extra["official_name"]
        truth = made["truth"][name]
        assert clip.id == Path(name).stem
        # wav copied byte for byte
        assert (out / clip.path).read_bytes() == (made["exp"] / "5-wav32k" / name).read_bytes()
        assert clip.n_samples == len(truth["pcm"]) and clip.n_frames == len(truth["pcm"]) // 640
        spec = np.load(out / clip.spec)
        assert spec.shape == (1025, clip.n_frames) and spec.dtype == np.float16
        ssl = np.load(out / clip.ssl)
        t = truth["ssl"].shape[-1]
        assert ssl.shape == (768, clip.n_frames) and ssl.dtype == np.float16
        np.testing.assert_array_equal(ssl[:, :t], truth["ssl"][0].numpy())
        if clip.n_frames == t + 1:
            np.testing.assert_array_equal(ssl[:, -1], ssl[:, -2])
        assert clip.phones == truth["phones"]
        assert clip.phone_ids == [table.index(p) for p in truth["phones"]]
        assert clip.text == clip.norm_text == truth["norm"]
        assert clip.language == truth["lang"] and clip.speaker == "myvoice"
        assert clip.word2ph == ([2, 2, 1, 2, 2] if truth["lang"] == "zh" else None)
    assert {c.split for c in clips} == {"train", "val"}
    check_features(layout, clips)
    stamp = read_stamp(layout)
    assert stamp is not None and stamp.model.startswith("official:")
    rep = json.loads(layout.report_json.read_text())
    assert rep["clips"] == len(clips) and rep["stages"] == ["official-import"]
    assert layout.report_png.is_file() and layout.config.is_file()


def test_bad_entries_are_skipped_and_reported(tmp_path, raw_waves):
    made = build_exp(
        tmp_path,
        raw_waves,
        extra_lines=("broken line with no tabs", "only.wav\ta b\tNone", "ghost.wav\tAA1\tNone\tah"),
    )
    exp = made["exp"]
    names = sorted(made["truth"])
    # 0: unknown phone; 1: features of another model size; 2: not a tensor (safe loader refuses);
    # 3: frame count off by 3; 4: too short; 5: fine
    text = (exp / "2-name2text.txt").read_text(encoding="utf-8")
    text = text.replace(f"{names[0]}\t", f"{names[0]}\tXX9 ", 1)
    (exp / "2-name2text.txt").write_text(text, encoding="utf-8")
    torch.save(torch.zeros(1, 512, 50), exp / "4-cnhubert" / f"{names[1]}.pt")
    torch.save({"obj": NotATensor()}, exp / "4-cnhubert" / f"{names[2]}.pt")
    t3 = made["truth"][names[3]]["ssl"].shape[-1]
    torch.save(torch.zeros(1, 768, t3 - 3, dtype=torch.float16), exp / "4-cnhubert" / f"{names[3]}.pt")
    sf.write(exp / "5-wav32k" / names[4], made["truth"][names[4]]["pcm"][:9600], 32000, subtype="PCM_16")
    (exp / "4-cnhubert" / "orphan.wav.pt").write_bytes(b"")
    report = import_official(exp, tmp_path / "ds", Config())
    assert [c.extra["official_name"] for c in report.clips] == [names[5]]
    reasons = {s.source: s.reason for s in report.skipped}
    assert reasons["2-name2text.txt:7"] == "1 tab-separated fields, expected 4"
    assert reasons["2-name2text.txt:8"] == "3 tab-separated fields, expected 4"
    assert reasons["ghost.wav"] == "no 4-cnhubert/ghost.wav.pt or 5-wav32k/ghost.wav"
    assert reasons["orphan.wav"] == "not in 2-name2text.txt"
    assert reasons[names[0]] == "phones not in the v2 table: 'XX9'"
    assert "has shape (1, 512, 50)" in reasons[names[1]]
    assert reasons[names[2]].startswith(f"cannot load 4-cnhubert/{names[2]}.pt")
    assert "only a difference of one frame is expected" in reasons[names[3]]
    assert reasons[names[4]].startswith("shorter than prepare.min_clip_seconds (0.30 s")
    assert all(s.stage == "official-import" for s in report.skipped)
    assert not (tmp_path / "ds" / "wavs" / f"{Path(names[4]).stem}.wav").exists()


def test_list_file_gives_language_and_speaker(tmp_path, raw_waves):
    made = build_exp(tmp_path, raw_waves[:2])
    names = sorted(made["truth"])
    lst = tmp_path / "x.list"
    lst.write_text(f"D:/raw/{names[0]}|alice|JA|text\nraw/{names[1]}|bob|en|more\n", encoding="utf-8")
    report = import_official(made["exp"], tmp_path / "ds", Config(), list_file=lst)
    got = {c.extra["official_name"]: (c.speaker, c.language) for c in report.clips}
    assert got == {names[0]: ("alice", "ja"), names[1]: ("bob", "en")}


def test_reimport_and_foreign_out_dir(tmp_path, raw_waves):
    made = build_exp(tmp_path, raw_waves[:3])
    out = tmp_path / "ds"
    import_official(made["exp"], out, Config())
    # a clip that disappears from the official folder disappears from the dataset too
    name = sorted(made["truth"])[0]
    (made["exp"] / "5-wav32k" / name).unlink()
    report = import_official(made["exp"], out, Config())
    assert report.n_clips == 2
    assert not (out / "ssl" / f"{Path(name).stem}.npy").exists()
    # another official folder into the same dataset needs --force
    other = build_exp(tmp_path / "b", raw_waves[3:5])
    with pytest.raises(GsvError, match="already holds a dataset made from the official folder"):
        import_official(other["exp"], out, Config())
    assert import_official(other["exp"], out, Config(), force=True).n_clips == 2
    assert len(list((out / "wavs").glob("*.wav"))) == 2


def test_not_an_official_folder(tmp_path):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "2-name2text.txt").write_text("")
    with pytest.raises(GsvError, match="no 4-cnhubert, 5-wav32k"):
        import_official(tmp_path / "exp", tmp_path / "ds", Config())
    with pytest.raises(GsvError, match="not found"):
        import_official(tmp_path / "nope", tmp_path / "ds", Config())


def test_name2text_parsing_quirks(tmp_path):
    p = tmp_path / "2-name2text.txt"
    p.write_text("a.wav\tAA1 B\tNone\tab\n\nb.wav\tn i3\t[2\tni\na.wav\tB\tNone\tb\n", encoding="utf-8")
    entries, skipped, warnings = parse_name2text(p)
    assert set(entries) == {"a.wav", "b.wav"} and not skipped
    assert entries["a.wav"].phones == ["B"] and entries["a.wav"].line == 4  # the later line wins
    assert entries["b.wav"].word2ph is None
    assert [w.source for w in warnings] == ["2-name2text.txt:3", "2-name2text.txt:4"]


def test_guess_language():
    assert guess_language(["HH", "AH0", ",", "L"], None) == "en"
    assert guess_language(["n", "i3"], [2]) == "zh"
    assert guess_language(["k", "o", "N", "n", "i", "ch", "i", "w", "a"], None) == "ja"
    assert guess_language(["Yn", "Yei5"], [2]) == "yue"
