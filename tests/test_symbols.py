"""Symbol tables and phone ids against the official tables in shared/reference/symbols_v*.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from gptsovits_train.text import symbols as sym
from gptsovits_train.text.zh_pinyin import spell, syllable_phones, syllable_table


def _reference(reference_dir: Path, version: str) -> dict:
    return json.loads((reference_dir / f"symbols_{version}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_tables_equal_official(reference_dir: Path, version: str) -> None:
    ref = _reference(reference_dir, version)
    ours = list(sym.symbols(version))
    assert len(ours) == ref["count"]
    assert ours == ref["symbols"]
    for phone, idx in ref["special_ids"].items():
        assert sym.symbol_to_id(version)[phone] == idx
    assert sym.symbol_to_id(version)[ref["pad"]] == ref["pad_id"]


def test_v1_is_prefix_of_v2() -> None:
    v1, v2 = sym.symbols("v1"), sym.symbols("v2")
    assert v2[: len(v1)] == v1
    assert v2[len(v1) : len(v1) + 2] == ("[", "]")


def test_fixture_phone_ids_follow_table(reference_dir: Path) -> None:
    """Every phone sequence of the g2p fixture maps to the official ids recorded with it."""
    fixture = json.loads((reference_dir / "g2p_fixture_v2.json").read_text(encoding="utf-8"))
    items = fixture["zh"] + fixture["en"] + fixture["prepare_text_examples"]["items"]
    for item in items:
        assert sym.phones_to_ids(item["phones"], "v2") == item["phone_ids"]
        assert sym.ids_to_phones(item["phone_ids"], "v2") == item["phones"]


def test_unknown_phone_becomes_unk_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        ids = sym.phones_to_ids(["n", "i2", "@@", ","], "v2")
    assert ids == [227, 167, 86, 1]
    assert "@@" in caplog.text
    mapped, unknown = sym.map_unknown(["a1", "xx", "xx", "yy"], "v1")
    assert mapped == ["a1", "UNK", "UNK", "UNK"]
    assert unknown == ["xx", "yy"]


def test_version_and_id_errors() -> None:
    with pytest.raises(ValueError, match="unknown symbol table version"):
        sym.symbols("v3")
    with pytest.raises(IndexError):
        sym.ids_to_phones([322], "v1")
    # Korean/Cantonese symbols exist only in v2
    assert sym.is_known("ㄱ", "v2") and not sym.is_known("ㄱ", "v1")
    assert sym.is_known("Yaa1", "v2") and not sym.is_known("Yaa1", "v1")


# Hand-written rows of the opencpop-strict syllable table (spelled syllable -> phones).
_SYLLABLES = {
    "a": ("AA", "a"),
    "ang": ("AA", "ang"),
    "e": ("EE", "e"),
    "er": ("EE", "er"),
    "o": ("OO", "o"),
    "ou": ("OO", "ou"),
    "yi": ("y", "i"),
    "ya": ("y", "a"),
    "ye": ("y", "E"),
    "yan": ("y", "En"),
    "you": ("y", "ou"),
    "yu": ("y", "v"),
    "yuan": ("y", "van"),
    "yvn": ("y", "vn"),
    "wu": ("w", "u"),
    "wo": ("w", "o"),
    "zi": ("z", "i0"),
    "si": ("s", "i0"),
    "zhi": ("zh", "ir"),
    "ri": ("r", "ir"),
    "ju": ("j", "v"),
    "jv": ("j", "v"),
    "quan": ("q", "van"),
    "xue": ("x", "ve"),
    "xun": ("x", "vn"),
    "lv": ("l", "v"),
    "nve": ("n", "ve"),
    "lu": ("l", "u"),
    "diu": ("d", "iu"),
    "gui": ("g", "ui"),
    "zhun": ("zh", "un"),
}


def test_syllable_table() -> None:
    table = syllable_table()
    assert len(table) == 429
    for key, pair in _SYLLABLES.items():
        assert table[key] == pair, key
    for key in ("lve", "cei", "zhei", "shei", "dia", "rua", "fo", "lo", "yo", "den", "nun"):
        assert key in table  # rare syllables of the official inventory
    for key in ("ji0", "bv", "fi", "yong1", "ü"):
        assert key not in table
    v2 = set(sym.symbols("v2"))
    for initial, final in table.values():  # every phone the table emits exists with every tone
        assert initial in v2
        assert all(final + tone in v2 for tone in "12345")


def test_spelling_of_pypinyin_strict_pairs() -> None:
    assert spell("x", "iou") == "xiu"
    assert spell("g", "uei") == "gui"
    assert spell("l", "uen") == "lun"
    assert spell("", "ing") == "ying"
    assert spell("", "i") == "yi"
    assert spell("", "in") == "yin"
    assert spell("", "u") == "wu"
    assert spell("", "v") == "yu"
    assert spell("", "van") == "yuan"
    assert spell("", "iou") == "you"
    assert spell("", "uei") == "wei"
    assert spell("", "uo") == "wo"
    assert spell("", "er") == "er"
    assert spell("j", "v") == "jv"
    assert syllable_phones("x", "iou3") == ("x", "iu3")
    assert syllable_phones("", "van2") == ("y", "van2")
    assert syllable_phones("zh", "i1") == ("zh", "ir1")
    assert syllable_phones("", "er5") == ("EE", "er5")
    assert syllable_phones("", "m2") is None  # 呣-like syllables are outside the table
    assert syllable_phones("b", "a") is None  # no tone digit
