"""The official GPT-SoVITS phoneme tables (v1: 322 symbols, v2: 732 symbols) and phone → id lookup.

A phone's id is its index in the table, exactly as the official `cleaned_text_to_sequence` does, so
fine-tuning from the official weights sees the same embedding rows. The tables are built here from
their documented construction rules (shared/docs/text-frontend.md §0) rather than shipped as a list;
`tests/test_symbols.py` compares them entry by entry with `shared/reference/symbols_v*.json`.

v1 = code-point sorted set of: the pad `_`, Mandarin initials (with the AA/EE/OO zero-initial marks),
Mandarin finals × tones 1-5, the Japanese phones, punctuation + SP/SP2/SP3/UNK, ARPAbet.
v2 = v1 (same order, ids 0-321) + the Japanese pitch marks `[` `]` + sorted Korean symbols +
sorted Cantonese (Jyutping, `Y`-prefixed) symbols.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import cache

LOG = logging.getLogger(__name__)

PAD = "_"
UNK = "UNK"
#: Punctuation phones shared by every language (the official `punctuation` list).
PUNCTUATION: tuple[str, ...] = ("!", "?", "…", ",", ".", "-")
#: Silence/unknown phones: SP (unused by zh/en), SP2/SP3 (the `￥`/`^` special-silence paths), UNK.
SPECIAL: tuple[str, ...] = ("SP", "SP2", "SP3", UNK)

# ------------------------------------------------------------------------------------------ Mandarin
#: Initials as used by the opencpop-strict phone set; AA/EE/OO stand in for a missing initial before
#: a/e/o, and y/w are kept as initials.
ZH_INITIALS: tuple[str, ...] = (
    "AA", "EE", "OO",
    "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x",
    "zh", "ch", "sh", "r", "z", "c", "s", "y", "w",
)  # fmt: skip
#: Toneless finals: `i0` is the apical vowel after z/c/s, `ir` after zh/ch/sh/r, `v` is ü,
#: `E`/`En` are the finals of ye/yan.
ZH_FINALS: tuple[str, ...] = (
    "a", "ai", "an", "ang", "ao", "e", "ei", "en", "eng", "er", "E", "En",
    "i", "i0", "ir", "ia", "ian", "iang", "iao", "ie", "in", "ing", "iong", "iu",
    "o", "ong", "ou", "u", "ua", "uai", "uan", "uang", "ui", "un", "uo", "v", "van", "ve", "vn",
)  # fmt: skip
ZH_TONES: tuple[str, ...] = ("1", "2", "3", "4", "5")  # 5 = neutral tone

# ------------------------------------------------------------------------------------------ Japanese
JA_PHONES: tuple[str, ...] = (
    "I", "N", "U", "a", "b", "by", "ch", "cl", "d", "dy", "e", "f", "g", "gy", "h", "hy", "i", "j",
    "k", "ky", "m", "my", "n", "ny", "o", "p", "py", "r", "ry", "s", "sh", "t", "ts", "u", "v", "w",
    "y", "z",
)  # fmt: skip
JA_PITCH_MARKS: tuple[str, ...] = ("[", "]")  # v2 only

# ------------------------------------------------------------------------------------------- English
ARPA_VOWELS: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW",
)  # fmt: skip
ARPA_CONSONANTS: tuple[str, ...] = (
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH",
    "T", "TH", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
#: The official ARPAbet set also holds two vowels without a stress digit.
ARPA_UNSTRESSED: tuple[str, ...] = ("ER", "IH")

# -------------------------------------------------------------------------------------------- Korean
#: Compatibility jamo: 19 initial consonants and the 8 simple vowels, plus 空 (space) and 停 (other).
KO_SYMBOLS: tuple[str, ...] = tuple("ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ" + "ㅏㅐㅓㅔㅗㅜㅡㅣ" + "空停")

# ----------------------------------------------------------------------------------------- Cantonese
YUE_INITIALS: tuple[str, ...] = (
    "b", "c", "d", "f", "g", "gw", "h", "j", "k", "kw", "l", "m", "n", "ng", "p", "s", "t", "w", "z",
)  # fmt: skip
#: Finals that occur with a tone digit 1-6 (g/k/m/n/p/t are syllabic or checked-tone codas).
YUE_TONED_FINALS: tuple[str, ...] = (
    "a", "aa", "aai", "aak", "aam", "aan", "aang", "aap", "aat", "aau", "ai", "ak", "am", "an", "ang",
    "ap", "at", "au", "e", "ei", "ek", "eng", "eoi", "eon", "eot", "g", "i", "ik", "im", "in", "ing",
    "ip", "it", "iu", "k", "m", "n", "o", "oe", "oek", "oeng", "oi", "ok", "on", "ong", "ot", "ou",
    "p", "t", "u", "ui", "uk", "un", "ung", "ut", "yu", "yun", "yut",
)  # fmt: skip
#: Finals that the official table also lists without a tone digit.
YUE_TONELESS_FINALS: tuple[str, ...] = ("a", "aa", "ai", "ak", "au", "e", "o", "oi", "ok", "on", "ou", "uk")
YUE_TONES: tuple[str, ...] = ("1", "2", "3", "4", "5", "6")

VERSIONS: tuple[str, ...] = ("v1", "v2")


def _arpabet() -> set[str]:
    stressed = {v + s for v in ARPA_VOWELS for s in "012"}
    return stressed | set(ARPA_UNSTRESSED) | set(ARPA_CONSONANTS)


def _cantonese() -> set[str]:
    toned = {"Y" + f + t for f in YUE_TONED_FINALS for t in YUE_TONES}
    return toned | {"Y" + i for i in YUE_INITIALS} | {"Y" + f for f in YUE_TONELESS_FINALS}


@cache
def symbols(version: str = "v2") -> tuple[str, ...]:
    """The official symbol table of `version` (index = phone id)."""
    if version not in VERSIONS:
        raise ValueError(f"unknown symbol table version {version!r} (expected one of {VERSIONS})")
    base: set[str] = {PAD, *ZH_INITIALS, *JA_PHONES, *PUNCTUATION, *SPECIAL, *_arpabet()}
    base |= {f + t for f in ZH_FINALS for t in ZH_TONES}
    table = sorted(base)  # Python str order = code-point order, as upstream
    if version == "v2":
        table += list(JA_PITCH_MARKS) + sorted(KO_SYMBOLS) + sorted(_cantonese())
    return tuple(table)


@cache
def symbol_to_id(version: str = "v2") -> dict[str, int]:
    """phone → id for `version`."""
    return {s: i for i, s in enumerate(symbols(version))}


def is_known(phone: str, version: str = "v2") -> bool:
    return phone in symbol_to_id(version)


def map_unknown(phones: Iterable[str], version: str = "v2") -> tuple[list[str], list[str]]:
    """Replace every phone missing from the table by `UNK`, as the official `clean_text` does.

    Returns (phones, the distinct unknown phones that were replaced, in order of appearance).
    """
    table = symbol_to_id(version)
    out: list[str] = []
    unknown: list[str] = []
    for ph in phones:
        if ph in table:
            out.append(ph)
        else:
            out.append(UNK)
            if ph not in unknown:
                unknown.append(ph)
    return out, unknown


def phones_to_ids(phones: Iterable[str], version: str = "v2") -> list[int]:
    """Phone symbols → ids in the official `version` table.

    A phone that is not in the table is mapped to `UNK` (id 86) with a warning, like the official
    `clean_text`; the official `cleaned_text_to_sequence` itself would raise KeyError there.
    """
    mapped, unknown = map_unknown(phones, version)
    if unknown:
        LOG.warning("phones not in the %s table mapped to UNK: %s", version, " ".join(unknown))
    table = symbol_to_id(version)
    return [table[ph] for ph in mapped]


def ids_to_phones(ids: Iterable[int], version: str = "v2") -> list[str]:
    """Inverse of `phones_to_ids` (raises IndexError for an id outside the table)."""
    table = symbols(version)
    out: list[str] = []
    for i in ids:
        if not 0 <= i < len(table):
            raise IndexError(f"phone id {i} outside the {version} table (0..{len(table) - 1})")
        out.append(table[i])
    return out
