"""Mandarin frontend: parity with the official fixture, plus hand-written cases for every rule.

Expected values in the rule tests follow the official behaviour described in
shared/docs/text-frontend.md §1 (quirks included); the fixture tests compare with the output of the
official frontend itself (shared/reference/g2p_fixture_v2.json).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from gptsovits_train.config import Config
from gptsovits_train.data.manifest import Clip
from gptsovits_train.layout import DatasetLayout
from gptsovits_train.text import (
    TextError,
    g2p,
    g2p_detailed,
    normalize_language,
    official_prepare_replace,
    phones_to_ids,
)
from gptsovits_train.text.chinese import chinese_normalize
from gptsovits_train.text.mixed import split_by_script
from gptsovits_train.text.zh_numbers import cardinal, digit_string, number
from gptsovits_train.text.zh_tone_sandhi import pre_merge

ZH_TARGET = 0.98


@pytest.fixture(scope="module")
def fixture(reference_dir: Path) -> dict[str, Any]:
    return json.loads((reference_dir / "g2p_fixture_v2.json").read_text(encoding="utf-8"))


def _phones(text: str) -> str:
    return " ".join(g2p(text, "zh")[0])


# ------------------------------------------------------------------------------------------ parity
def test_fixture_parity_zh(fixture: dict[str, Any]) -> None:
    items = fixture["zh"]
    mismatches = []
    exact = 0
    for item in items:
        phones, word2ph, norm = g2p(item["text"], "zh")
        if phones != item["phones"]:
            mismatches.append((item["text"], " ".join(item["phones"]), " ".join(phones)))
            continue
        exact += 1
        # wherever the phones match, norm_text, word2ph and ids must match too
        assert norm == item["norm_text"], item["text"]
        assert word2ph == item["word2ph"], item["text"]
        assert phones_to_ids(phones) == item["phone_ids"]
    assert exact / len(items) >= ZH_TARGET, mismatches
    assert len(items) == 40


def test_fixture_prepare_example_zh(fixture: dict[str, Any]) -> None:
    (item,) = [i for i in fixture["prepare_text_examples"]["items"] if i["language"] == "zh"]
    passed = official_prepare_replace(item["raw_text"])
    assert passed == item["text_passed_to_clean_text"]
    assert g2p(passed, "zh") == (item["phones"], item["word2ph"], item["norm_text"])


# ----------------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024年3月15日是星期五。", "二零二四年三月十五日是星期五."),  # year digit by digit
        ("会议在2023-12-01举行", "会议在二零二三年十二月一日举行"),
        ("时间是08:05:09", "时间是八点零五分零九秒"),
        ("8:30-9:15开会", "八点半至九点半开会"),  # quirk: the end's 半 follows the start minute
        ("12:00", "十二点"),
        ("温度-3.5℃", "温度零下三点五度"),
        ("5cm~10cm", "五厘米至十厘米"),
        ("x²+y²=1", "的二次方加的二次方等于一"),
        ("1/3的人", "三分之一的人"),
        ("-50%", "负百分之五十"),
        ("手机+86 13812345678", "手机八六幺三八幺二三四五六七八"),
        ("热线400-123-4567", "热线四零零减幺二三减四五六七"),  # arithmetic runs before phone numbers
        ("范围3-5个", "范围三减五个"),
        ("共1000人", "共一千人"),  # number + measure word: cardinal
        ("100克", "幺零零克"),  # 克 alone is no measure word: digit by digit, 1 -> 幺
        ("110000", "幺幺零零零零"),
        ("10000元", "一万元"),
        ("1005年", "一零零五年"),
        ("3.20元", "三点二元"),
        ("还有.5", "还有零点五"),
        ("5+个苹果", "五多个苹果"),
        ("20+", "二十加"),
        ("约有30余人", "约有三十余人"),
        ("他是1,000,000富翁", "他是一,零零零,零零零富翁"),  # no thousands separators
        ("價格：100元/斤", "价格,一百元每斤"),  # traditional -> simplified, / -> 每
        ("這個問題很難", "这个问题很难"),
        ("ＡＢＣ１２３", "幺二三"),  # full width -> ASCII, letters dropped
        ("第①题", "第一题"),
        ("α粒子", "阿尔法粒子"),
        ("我...不知道", "我…不知道"),
        ("嗯嗯，好的～", "恩恩,好的…"),
        ("《三体》很好看——真的", "三体很好看真的"),
        ("今天是周三，天气很好！！", "今天是周三,天气很好!"),
        ("你好!?", "你好!"),
        ("GPT-4发布", "减四发布"),
        ("叫Tom", "叫米"),  # unit table: "m" -> 米 with no number
        ("二〇二四年", "二二四年"),  # 〇 is outside U+4E00-U+9FA5
        ("分号;冒号:没了", "分号冒号没了"),  # ASCII ; and : are deleted, not mapped
    ],
)
def test_normalisation(text: str, expected: str) -> None:
    assert chinese_normalize(text) == expected


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        ("0", "零"),
        ("000", "零"),
        ("7", "七"),
        ("10", "十"),
        ("15", "十五"),
        ("20", "二十"),
        ("100", "一百"),
        ("101", "一百零一"),
        ("110", "一百一十"),
        ("1005", "一千零五"),
        ("1050", "一千零五十"),
        ("10000", "一万"),
        ("100000", "十万"),
        ("1000001", "一百万零一"),
        ("123456789", "一亿二千三百四十五万六千七百八十九"),
        ("", ""),
    ],
)
def test_cardinal(digits: str, expected: str) -> None:
    assert cardinal(digits) == expected


def test_number_and_digits() -> None:
    assert number("5999.99") == "五千九百九十九点九九"
    assert number("0.50") == "零点五"
    assert number("12.0") == "十二"
    assert digit_string("2024") == "二零二四"
    assert digit_string("110", alt_one=True) == "幺幺零"
    with pytest.raises(ValueError, match="more than one decimal point"):
        number("1.2.3")


# -------------------------------------------------------------------------------------- tone rules
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # 不
        ("不对", "b u2 d ui4"),
        ("不好", "b u4 h ao3"),
        ("看不懂", "k an4 b u5 d ong3"),
        # 一
        ("一个", "y i2 g e5"),
        ("一天", "y i4 t ian1"),
        ("统一", "t ong3 y i1"),
        ("第一", "d i4 y i1"),
        ("看一看", "k an4 y i5 k an4"),
        ("一二一", "y i1 EE er4 y i1"),  # inside a number: untouched
        # neutral tone
        ("奶奶", "n ai3 n ai5"),
        ("试试", "sh ir4 sh ir5"),
        ("东西", "d ong1 x i5"),  # must-neutral word list
        ("我们", "w o3 m en5"),
        ("桌子", "zh uo1 z i05"),
        ("家里", "j ia1 l i5"),
        ("上来", "sh ang4 l ai5"),
        ("两个", "l iang3 g e5"),
        ("这个", "zh e4 g e5"),
        ("走过", "z ou3 g uo4"),
        ("整整", "zh eng2 zh eng3"),  # exempt from the reduplication rule, then 3-3 sandhi
        # third tone
        ("你好", "n i2 h ao3"),
        ("水果", "sh ui2 g uo3"),
        ("展览馆", "zh an2 l an2 g uan3"),  # 2+1
        ("纸老虎", "zh ir3 l ao2 h u3"),  # 1+2
        ("好好", "h ao2 h ao3"),
        # erhua
        ("小院儿", "x iao3 y van4 EE er4"),
        ("有点儿", "y ou2 d ian3 EE er3"),
        ("一会儿", "y i2 h ui4 EE er4"),
        ("女儿", "n v3 EE er2"),  # not-erhua list: er1 -> er2 only
        ("花儿", "h ua1 EE er2"),
        ("哪儿", "n a3 EE er3"),
    ],
)
def test_tone_sandhi_and_erhua(text: str, expected: str) -> None:
    assert _phones(text) == expected


def test_second_reduplication_skips_yi_merging() -> None:
    """Official quirk: a second X一X in one sentence makes the 一-merge step fail and be skipped."""
    one = pre_merge([("想", "v"), ("一", "m"), ("想", "v")])
    assert one == [("想一想", "v")]
    two = [("想", "v"), ("一", "m"), ("想", "v"), (",", "x"), ("看", "v"), ("一", "m"), ("看", "v")]
    assert pre_merge(two) == two


def test_pre_merge_rules() -> None:
    assert pre_merge([("不", "d"), ("好", "a")]) == [("不好", "a")]
    assert pre_merge([("好", "a"), ("不", "d")]) == [("好", "a"), ("不", "d")]
    assert pre_merge([("一", "m"), ("天", "q")]) == [("一天", "m")]
    assert pre_merge([("走", "v"), ("走", "v")]) == [("走走", "v")]
    assert pre_merge([("小", "a"), ("院", "n"), ("儿", "n")])[-1][0].endswith("儿")
    # two all-third-tone words of <= 3 characters merge; a reduplication does not take part
    assert pre_merge([("你", "r"), ("好", "a")]) == [("你好", "r")]
    assert pre_merge([("好好", "z"), ("走", "v")]) == [("好好", "z"), ("走", "v")]


def test_word2ph_and_punctuation() -> None:
    phones, word2ph, norm = g2p("你好，世界！", "zh")
    assert norm == "你好,世界!"
    assert word2ph == [2, 2, 1, 2, 2, 1]
    assert sum(word2ph) == len(phones)
    assert phones[4] == "," and phones[-1] == "!"


# ------------------------------------------------------------------------------ special paths, bad text
def test_special_silence() -> None:
    phones, _, norm = g2p("好^我们走吧，别等了。", "zh")
    assert norm == "好,我们走吧,别等了."
    assert phones.count("SP3") == 2 and "," not in phones
    phones, _, _ = g2p("好￥走吧，走", "zh")
    assert phones.count("SP2") == 2 and "," not in phones


def test_official_prepare_replace() -> None:
    assert official_prepare_replace("涨了5%，花了￥10") == "涨了5-，花了,10"
    assert g2p(official_prepare_replace("涨了5%"), "zh")[2] == "涨了五减"
    assert g2p("涨了5%", "zh")[2] == "涨了百分之五"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty text"),
        ("   ", "empty text"),
        ("，。！？", "nothing pronounceable"),
        ("😀😀", "nothing pronounceable"),
        ("iPhone", "nothing pronounceable"),
        ("^", "nothing pronounceable"),
    ],
)
def test_bad_text_raises(text: str, reason: str) -> None:
    with pytest.raises(TextError, match=reason):
        g2p(text, "zh")


def test_cleaned_text_warns(caplog: pytest.LogCaptureFixture) -> None:
    result = g2p_detailed("我用iPhone给妈妈打电话😀", "zh")
    assert result.norm_text == "我用给妈妈打电话"
    assert result.warnings and "iPhone" in result.warnings[0] and "😀" in result.warnings[0]
    with caplog.at_level(logging.WARNING):
        g2p("我用iPhone", "zh")
    assert "iPhone" in caplog.text
    assert g2p_detailed("你好", "zh").warnings == []


def test_languages() -> None:
    assert normalize_language("ZH") == "zh"
    assert normalize_language("mixed") == "auto"
    for lang, name in (("ja", "Japanese"), ("JP", "Japanese"), ("ko", "Korean"), ("yue", "Cantonese")):
        with pytest.raises(TextError, match=name):
            g2p("你好", lang)
    with pytest.raises(TextError, match="unknown language"):
        g2p("你好", "fr")


# ---------------------------------------------------------------------------------------- mixed
def test_split_by_script() -> None:
    assert split_by_script("我用iPhone给妈妈打电话") == [
        ("zh", "我用"),
        ("en", "iPhone"),
        ("zh", "给妈妈打电话"),
    ]
    assert split_by_script("他说hello, world然后走了") == [
        ("zh", "他说"),
        ("en", "hello, world"),
        ("zh", "然后走了"),
    ]
    assert split_by_script("买了3个apple") == [("zh", "买了3个"), ("en", "apple")]
    assert split_by_script("GPT4很强") == [("en", "GPT4"), ("zh", "很强")]
    assert split_by_script("ＡＩ时代") == [("en", "AI"), ("zh", "时代")]
    assert split_by_script("纯中文。") == [("zh", "纯中文。")]
    assert split_by_script("Only English.") == [("en", "Only English"), ("zh", ".")]


def test_auto_on_chinese_only_equals_zh() -> None:
    text = "我们明天早上八点出发，不见不散。"
    assert g2p(text, "auto") == g2p(text, "zh")


@pytest.fixture
def fake_english(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in English frontend (letters spelled as phones) to test the wiring on its own."""
    import sys
    import types

    def english_normalize_report(text: str) -> tuple[str, list[str]]:
        return text, []

    def english_phones(norm_text: str) -> list[str]:
        words = [w for w in norm_text.replace(",", " ").split() if w]
        return [p for w in words for p in ("EH1", "N")]

    module = types.ModuleType("gptsovits_train.text.english")
    module.english_normalize_report = english_normalize_report  # type: ignore[attr-defined]
    module.english_phones = english_phones  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gptsovits_train.text.english", module)


def test_mixed_wiring(fake_english: None) -> None:
    phones, word2ph, norm = g2p("我用iPhone打电话", "auto")
    assert phones == ["w", "o3", "y", "ong4", ",", "EH1", "N", "d", "a3", "d", "ian4", "h", "ua4"]
    assert word2ph is None
    assert norm == "我用iPhone打电话"
    # English alone: fewer than 4 phones -> "," in front (official clean_text rule)
    assert g2p("Hi", "en")[0] == [",", "EH1", "N"]
    assert g2p("big red", "en")[0] == ["EH1", "N", "EH1", "N"]


# -------------------------------------------------------------------------------------- prepare stage
def _clip(cid: str, text: str, language: str = "zh") -> Clip:
    return Clip(id=cid, path=f"wavs/{cid}.wav", source="x.wav", start=0.0, end=1.0, duration=1.0, text=text,
                language=language, speaker="s")  # fmt: skip


def test_phonemize_clips(tmp_path: Path, fake_english: None) -> None:
    from gptsovits_train.data.phonemize import phonemize_clips

    cfg = Config()
    clips = [
        _clip("ok", "你好，世界！"),
        _clip("pct", "增长了37.5%"),
        _clip("emoji", "😀"),
        _clip("empty", " "),
        _clip("ja", "こんにちは", "ja"),
        _clip("long", "我" * 600),
        _clip("latin", "我用iPhone打电话"),
        _clip("cleaned", "你好😀"),
    ]
    result = phonemize_clips(DatasetLayout(tmp_path), clips, cfg)
    kept = {c.id: c for c in result.clips}
    assert set(kept) == {"ok", "pct", "latin", "cleaned"}
    ok = kept["ok"]
    assert ok.phones == ["n", "i2", "h", "ao3", ",", "sh", "ir4", "j", "ie4", "!"]
    assert ok.phone_ids == phones_to_ids(ok.phones)
    assert ok.word2ph == [2, 2, 1, 2, 2, 1] and ok.norm_text == "你好,世界!" and ok.text_version == "v2"
    assert clips[0].phones is None  # input clips are not modified
    assert kept["pct"].norm_text == "增长了三十七点五减"  # official data-prep substitution
    assert "EH1" in (kept["latin"].phones or []) and kept["latin"].word2ph is None
    reasons = {s.source: s.reason for s in result.skipped}
    assert set(reasons) == {"emoji", "empty", "ja", "long"}
    assert "nothing pronounceable" in reasons["emoji"]
    assert reasons["empty"] == "empty transcript"
    assert "Japanese" in reasons["ja"]
    assert "1200 phones" in reasons["long"] and "max_phones=1000" in reasons["long"]
    assert all(s.stage == "text" for s in result.skipped)
    assert [w.source for w in result.warnings] == ["cleaned"]

    drop = Config.model_validate({"prepare": {"text": {"zh_latin": "drop", "official_prereplace": False}}})
    result = phonemize_clips(DatasetLayout(tmp_path), [clips[1], clips[6]], drop)
    kept = {c.id: c for c in result.clips}
    assert kept["pct"].norm_text == "增长了百分之三十七点五"
    assert kept["latin"].norm_text == "我用打电话"
    assert [w.source for w in result.warnings] == ["latin"]


def test_mixed_with_real_english_frontend() -> None:
    """With the real English frontend: Latin words in a Mandarin line are read, not dropped."""
    pytest.importorskip("gptsovits_train.text.english")
    assert g2p("Hi.", "en")[0] == [",", "HH", "AY1", "."]  # shared/docs/text-frontend.md §0
    phones, word2ph, norm = g2p("我用iPhone给妈妈打电话", "auto")
    zh_only = g2p("我用给妈妈打电话", "zh")[0]
    assert phones[:4] == zh_only[:4] and phones[-12:] == zh_only[-12:]
    english = phones[4:-12]
    assert english and all(ph[0].isupper() or ph == "," for ph in english)
    assert word2ph is None
    assert norm.startswith("我用") and norm.endswith("给妈妈打电话")
