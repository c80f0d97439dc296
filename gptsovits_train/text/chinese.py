"""Mandarin frontend (official v2 `chinese2` on its pypinyin path): text → norm_text → phones, word2ph.

Steps (shared/docs/text-frontend.md §1):

1. `chinese_normalize`: the sentence normaliser of `zh_normalize`, then per sentence 嗯→恩, 呣→母,
   punctuation mapping (`：；，、·/` → `,`, `。` and newline and `$` → `.`, `！`→`!`, `？`→`?`,
   `...`/`~`/`～` → `…`, `—` → `-`), then every character that is neither a CJK ideograph
   U+4E00-U+9FA5 nor one of `! ? … , . -` is deleted (Latin letters included), and runs of
   punctuation collapse to their first mark.
2. `chinese_g2p`: the text is cut after each punctuation mark; each piece is segmented with
   jieba (word + POS), re-grouped (`zh_tone_sandhi.pre_merge`), read word by word with pypinyin
   (`lazy_pinyin`, strict initials and `FINALS_TONE3` finals, 5 = neutral tone, pypinyin's phrase
   dictionary), tone-sandhi'd, erhua-adjusted, and every syllable becomes two phones (initial,
   final+tone) via the opencpop-strict table (`zh_pinyin`); punctuation is one phone.
   `word2ph` holds 2 per character and 1 per punctuation mark, so `len(word2ph) == len(norm_text)`.

The official g2pW polyphone model is not used (it needs a model download); the pypinyin path is
what the shared fixture was generated with (the only differences are some polyphone readings and
neutral tones).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import cache
from importlib import resources

from gptsovits_train.text import TextError
from gptsovits_train.text.zh_normalize import normalize_sentences
from gptsovits_train.text.zh_pinyin import syllable_phones
from gptsovits_train.text.zh_tone_sandhi import load_jieba, modified_tone, pre_merge

LOG = logging.getLogger(__name__)

#: Punctuation phones that the Mandarin frontend can emit (the official `punctuation` list).
PUNCTUATION = "!?…,.-"

_PUNCT_MAP = {
    "：": ",", "；": ",", "，": ",", "、": ",", "·": ",", "/": ",",
    "。": ".", "\n": ".", "$": ".",
    "！": "!", "？": "?",
    "...": "…", "~": "…", "～": "…",
    "—": "-",
}  # fmt: skip
_PUNCT_RE = re.compile(r"\.\.\.|[：；，、·/。\n$！？~～—]")
_NOT_KEPT = re.compile(r"[^\u4e00-\u9fa5!?…,.\-]+")
_REPEATED_PUNCT = re.compile(r"([!?…,.\-])[!?…,.\-]+")
_PIECE_END = re.compile(r"(?<=[!?…,.\-])\s*")
_LATIN = re.compile(r"[a-zA-Z]+")


def _is_noteworthy(char: str) -> bool:
    """A dropped character worth a warning: letters, digits, symbols/emoji, unassigned code points."""
    category = unicodedata.category(char)
    return category[0] in "LNS" or category in ("Co", "Cn")


def map_punctuation(sentence: str) -> tuple[str, list[str]]:
    """Map punctuation and drop every other non-ideograph; returns (text, dropped noteworthy runs)."""
    sentence = sentence.replace("嗯", "恩").replace("呣", "母")
    sentence = _PUNCT_RE.sub(lambda m: _PUNCT_MAP[m.group(0)], sentence)
    dropped = [run for run in _NOT_KEPT.findall(sentence) if any(_is_noteworthy(c) for c in run)]
    return _NOT_KEPT.sub("", sentence), dropped


def chinese_normalize_report(text: str) -> tuple[str, list[str]]:
    """`chinese_normalize` plus the noteworthy character runs it deleted (Latin words, emoji...)."""
    parts: list[str] = []
    dropped: list[str] = []
    for sentence in normalize_sentences(text):
        kept, lost = map_punctuation(sentence)
        parts.append(kept)
        dropped += lost
    return _REPEATED_PUNCT.sub(r"\1", "".join(parts)), dropped


def chinese_normalize(text: str) -> str:
    """The official `text_normalize` of the v2 Mandarin frontend (see the module docstring)."""
    return chinese_normalize_report(text)[0]


# ------------------------------------------------------------------------------------------- g2p
@cache
def _word_set(name: str) -> frozenset[str]:
    text = resources.files("gptsovits_train").joinpath(f"resources/zh/{name}").read_text("utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def segment(text: str) -> list[tuple[str, str]]:
    """jieba (word, POS) segmentation of one piece of normalised text."""
    return [(pair.word, pair.flag) for pair in load_jieba().posseg.lcut(text)]


def _initials_finals(word: str) -> tuple[list[str], list[str]]:
    from pypinyin import Style, lazy_pinyin

    initials = lazy_pinyin(word, neutral_tone_with_five=True, style=Style.INITIALS)
    finals = lazy_pinyin(word, neutral_tone_with_five=True, style=Style.FINALS_TONE3)
    if len(initials) != len(word) or len(finals) != len(word):
        raise TextError(f"no Mandarin reading for part of {word!r}")
    for char, initial, final in zip(word, initials, finals, strict=True):
        if initial == final:  # pypinyin hands back what it cannot read
            if char not in PUNCTUATION:
                raise TextError(f"no Mandarin reading for {char!r}")
        elif len(final) < 2 or final[-1] not in "12345":
            raise TextError(f"pypinyin gave an unusable reading {initial + final!r} for {char!r}")
    return list(initials), list(finals)


def merge_erhua(initials: list[str], finals: list[str], word: str, pos: str) -> tuple[list[str], list[str]]:
    """Erhua: a word-final 儿 takes the tone of the syllable before it (小院儿 → yuan4 er4).

    It always stays a separate `EE er` syllable. A final 儿 read er1 becomes er2 first. Words in the
    not-erhua list (女儿, 婴儿...) and adjectives/abbreviations/person names are left alone unless
    they are in the must-erhua list (胡同儿, 小院儿...).
    """
    must, never = _word_set("erhua_words.txt"), _word_set("not_erhua_words.txt")
    finals = list(finals)
    if finals and word[len(finals) - 1 : len(finals)] == "儿" and finals[-1] == "er1":
        finals[-1] = "er2"
    if word not in must and (word in never or pos in {"a", "j", "nr"}):
        return initials, finals
    if len(finals) != len(word):
        return initials, finals
    last = len(finals) - 1
    if last >= 1 and word[last] == "儿" and finals[last] in {"er2", "er5"} and word[-2:] not in never:
        finals[last] = "er" + finals[last - 1][-1]
    return initials, finals


def chinese_g2p(norm_text: str) -> tuple[list[str], list[int]]:
    """Normalised Mandarin text → (phones, word2ph). Raises TextError for unreadable input."""
    phones: list[str] = []
    word2ph: list[int] = []
    for raw_piece in _PIECE_END.split(norm_text):
        if not raw_piece.strip():
            continue
        piece = _LATIN.sub("", raw_piece)
        initials: list[str] = []
        finals: list[str] = []
        for word, pos in pre_merge(segment(piece)):
            if pos == "eng":
                continue
            word_initials, word_finals = _initials_finals(word)
            word_finals = modified_tone(word, pos, word_finals)
            word_initials, word_finals = merge_erhua(word_initials, word_finals, word, pos)
            initials += word_initials
            finals += word_finals
        for initial, final in zip(initials, finals, strict=True):
            if initial == final:
                phones.append(initial)
                word2ph.append(1)
                continue
            pair = syllable_phones(initial, final)
            if pair is None:
                raise TextError(f"syllable {initial + final!r} is not in the Mandarin phone table")
            phones += pair
            word2ph.append(2)
    return phones, word2ph
