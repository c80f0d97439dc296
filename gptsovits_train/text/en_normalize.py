"""English text normalisation as the official GPT-SoVITS frontend does it, quirks included.

Official `english.text_normalize` (shared/docs/text-frontend.md §2.1), step by step:

1. A punctuation map meant for Chinese marks. Its first two rules are character classes that
   upstream passes through `re.escape`, so they only match the literal strings `[;:：，；]` and
   `["’]`; in practice only `。！？` → `.!?` happen. Hence `;` and `:` are later *deleted* instead of
   becoming commas, and a curly `’` is deleted ("Don’t" → "Dont").
2. Rewrites, in this order (all numbers are ASCII digits unless said otherwise):
   list ordinals `1. ` → "first, "; spaced arithmetic `a + b` (plus/minus/times/divided by/
   "Equals"; any single letter counts as an operand, so "rock - roll" → "rock minus roll");
   negative integers after a space or at the start, eating the space ("to -5" → "tonegative 5");
   thousands commas removed (also "1,2" → "12"); times `hh:mm` → "ten thirty a.m." (24 h → 12 h);
   measurement units glued to a number (`5km` → "5 kilometers"; "1990s" → "1990 seconds"; `km/h`
   only ever matches `km`); £/$ amounts → pounds/pence, dollars/cents; decimals → "point" and
   single digits; fractions → "three fourths", "one half"; `1st`/`22nd` ordinals; remaining
   integers via inflect, 1001–2999 read as years ("nineteen seventy-six", "two thousand five",
   "nineteen hundred"), others as cardinals without "and".
3. Accents stripped (NFD, combining marks dropped); `%` → " percent".
4. Every character except `A–Z a–z`, space and `' . , ? ! -` is deleted (tabs and newlines too).
5. "i.e." → "that is", "e.g." → "for example" (any case).
6. A space before every capital letter that does not start the text or follow whitespace:
   "NASA" → "N A S A", "ChatGPT" → "Chat G P T", "Q3" → "Qthree".
7. Runs of punctuation, and punctuation right after whitespace, collapse to their first character
   ("!!!" → "!", "word ." → "word ").

Numbers inflect cannot read (10^36 and above) raise `TextError`, where upstream crashes.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from functools import cache
from typing import Any

from gptsovits_train.text import TextError
from gptsovits_train.text.symbols import PUNCTUATION

LOG = logging.getLogger(__name__)

# ------------------------------------------------------------------------------ step 1
#: The official pre-replacement map, applied as literal strings (see module docstring).
_PRE_MAP: tuple[tuple[str, str], ...] = (
    ("[;:：，；]", ","),
    ('["’]', "'"),
    ("。", "."),
    ("！", "!"),
    ("？", "?"),
)
_PRE_RE = re.compile("|".join(re.escape(key) for key, _ in _PRE_MAP))
_PRE_LOOKUP = dict(_PRE_MAP)


@cache
def _inflect() -> Any:
    import inflect

    return inflect.engine()


def _words(number: int | str, **kwargs: Any) -> str:
    """inflect's number_to_words; TextError for numbers it cannot read (≥ 10^36)."""
    import inflect

    try:
        text: str = _inflect().number_to_words(number, **kwargs)
    except inflect.NumOutOfRangeError as exc:
        raise TextError(f"number too large to read: {str(number)[:40]}…") from exc
    return text


# ------------------------------------------------------------------------------ step 2 rules
_SUP = "⁰¹²³⁴⁵⁶⁷⁸⁹ˣʸⁿ"
#: An arithmetic operand: a (signed, decimal) number, a bare decimal, or one letter (\d: any digit).
_OPERAND = rf"-?\d+(?:\.\d+)?[{_SUP}]*|\.\d+[{_SUP}]*|[A-Za-z][{_SUP}]*"
_ARITHMETIC = re.compile(rf"({_OPERAND})\s+([-+×÷=])\s+({_OPERAND})")
_OPERATORS = {"+": " plus ", "-": " minus ", "×": " times ", "÷": " divided by ", "=": " Equals "}

_LIST_ORDINAL = re.compile(r"\b([0-9]+)\. ")
_NEGATIVE = re.compile(r"(?:^|\s+)-(\d+)")
_THOUSANDS = re.compile(r"[0-9][0-9,]+[0-9]")
_TIME = re.compile(r"\b([01]?[0-9]|2[0-3]):([0-5][0-9])\b")
_UNITS: dict[str, tuple[str, str]] = {
    "m": ("meter", "meters"),
    "km": ("kilometer", "kilometers"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "ft": ("feet", "feet"),
    "L": ("liter", "liters"),
    "tbsp": ("tablespoon", "tablespoons"),
    "tsp": ("teaspoon", "teaspoons"),
    "h": ("hour", "hours"),
    "min": ("minute", "minutes"),
    "s": ("second", "seconds"),
    "°C": ("degree celsius", "degrees celsius"),
    "°F": ("degree fahrenheit", "degrees fahrenheit"),
}
# Alternatives in this order (the regex engine takes the first that fits, so `km/h` never wins).
_MEASUREMENT = re.compile(r"\b([0-9]+)(\.[0-9]+)?(" + "|".join(re.escape(u) for u in _UNITS) + r")\b")
_CURRENCIES = (
    # (pattern, singular/plural major unit, singular/plural minor unit)
    (re.compile(r"£([0-9.,]*[0-9]+)"), ("pound", "pounds"), ("penny", "pence")),
    (re.compile(r"([0-9.,]*[0-9]+)£"), ("pound", "pounds"), ("penny", "pence")),
    (re.compile(r"\$([0-9.,]*[0-9]+)"), ("dollar", "dollars"), ("cent", "cents")),
    (re.compile(r"([(0-9.,]*[0-9]+)\$"), ("dollar", "dollars"), ("cent", "cents")),
)
_DECIMAL = re.compile(r"[0-9]+\.\s*[0-9]+")
_FRACTION = re.compile(r"([0-9]+)/([0-9]+)")
_ORDINAL = re.compile(r"[0-9]+(?:st|nd|rd|th)")
_INTEGER = re.compile(r"[0-9]+")


def _list_ordinal(m: re.Match[str]) -> str:
    return str(_inflect().ordinal(m.group(1))) + ", "


def _arithmetic(text: str) -> str:
    # Repeated until no spaced operator is left: "1 + 2 + 3" needs two passes.
    while _ARITHMETIC.search(text):
        text = _ARITHMETIC.sub(lambda m: m.group(1) + _OPERATORS[m.group(2)] + m.group(3), text)
    return text


def _time(m: re.Match[str]) -> str:
    hours, minutes = int(m.group(1)), int(m.group(2))
    period = "a.m." if hours < 12 else "p.m."
    if hours > 12:
        hours -= 12
    if minutes == 0:
        return f"{_words(hours)} o'clock {period}"
    return f"{_words(hours)} {_words(minutes)} {period}"


def _measurement(m: re.Match[str]) -> str:
    number, decimals, unit = m.group(1), m.group(2), m.group(3)
    singular, plural = _UNITS[unit]
    word = singular if decimals is None and int(number) == 1 else plural
    return f"{number}{decimals or ''} {word}"


def _money(amount: str, major: tuple[str, str], minor: tuple[str, str]) -> str:
    parts = amount.split(".")
    if len(parts) > 2:
        return f"{amount} {major[1]}"
    try:
        whole = int(parts[0]) if parts[0] else 0
        cents = int(parts[1].ljust(2, "0")) if len(parts) > 1 and parts[1] else 0
    except ValueError as exc:  # e.g. "$1,.5" or "(5$": upstream crashes here
        raise TextError(f"cannot read the amount {amount!r}") from exc
    if whole and cents:
        return f"{whole} {major[whole != 1]} and {cents} {minor[cents != 1]}"
    if whole:
        return f"{whole} {major[whole != 1]}"
    if cents:
        return f"{cents} {minor[cents != 1]}"
    return f"zero {major[1]}"


def _decimal(m: re.Match[str]) -> str:
    whole, fraction = m.group(0).split(".")
    return whole + " point " + " ".join(fraction)


def _fraction(m: re.Match[str]) -> str:
    numerator, denominator = int(m.group(1)), int(m.group(2))
    spoken = _words(numerator)
    if denominator == 1:
        return spoken
    if denominator == 2:
        return f"{spoken} {'half' if numerator == 1 else 'halves'}"
    ordinal = str(_inflect().ordinal(_words(denominator)))
    return f"{spoken} {ordinal}{'s' if numerator > 1 else ''}"


def _integer(m: re.Match[str]) -> str:
    num = int(m.group(0))
    if 1000 < num < 3000:  # read as a year
        if num == 2000:
            return "two thousand"
        if 2000 < num < 2010:
            return "two thousand " + _words(num % 100)
        if num % 100 == 0:
            return _words(num // 100) + " hundred"
        return _words(num, andword="", zero="oh", group=2).replace(", ", " ")
    return _words(num, andword="")


def _currency_rule(major: tuple[str, str], minor: tuple[str, str]) -> Callable[[re.Match[str]], str]:
    return lambda m: _money(m.group(1), major, minor)


def _currencies(text: str) -> str:
    for pattern, major, minor in _CURRENCIES:
        text = pattern.sub(_currency_rule(major, minor), text)
    return text


def _strip_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")


_NOT_KEPT = re.compile(r"[^ A-Za-z'.,?!-]")
_IE = re.compile(r"(?i)i\.e\.")
_EG = re.compile(r"(?i)e\.g\.")
_CAPITAL = re.compile(r"(?<!^)(?<!\s)([A-Z])")
_PUNCT = "".join(re.escape(p) for p in PUNCTUATION)
_PUNCT_RUN = re.compile(rf"([{_PUNCT}\s])([{_PUNCT}])+")

#: The rewrites of step 2-6, in order: (name, function).
STEPS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("list-ordinal", lambda t: _LIST_ORDINAL.sub(_list_ordinal, t)),
    ("arithmetic", _arithmetic),
    ("negative", lambda t: _NEGATIVE.sub(lambda m: "negative " + m.group(1), t)),
    ("thousands", lambda t: _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), t)),
    ("time", lambda t: _TIME.sub(_time, t)),
    ("measurement", lambda t: _MEASUREMENT.sub(_measurement, t)),
    ("currency", _currencies),
    ("decimal", lambda t: _DECIMAL.sub(_decimal, t)),
    ("fraction", lambda t: _FRACTION.sub(_fraction, t)),
    ("ordinal", lambda t: _ORDINAL.sub(lambda m: _words(m.group(0)), t)),
    ("integer", lambda t: _INTEGER.sub(_integer, t)),
    ("accents", _strip_accents),
    ("percent", lambda t: t.replace("%", " percent")),
    ("charset", lambda t: _NOT_KEPT.sub("", t)),
    ("abbreviations", lambda t: _EG.sub("for example", _IE.sub("that is", t))),
    ("capitals", lambda t: _CAPITAL.sub(r" \1", t)),
)


def _report_dropped(text: str) -> list[str]:
    """Characters the charset step deletes that are not plain ASCII punctuation/whitespace."""
    dropped: list[str] = []
    for ch in _NOT_KEPT.findall(text):
        if not (ch.isascii() and not ch.isalnum()) and ch not in dropped:
            dropped.append(ch)
    return dropped


def english_normalize_report(text: str) -> tuple[str, list[str]]:
    """`english_normalize` plus the distinct characters it deleted that carried content
    (letters/digits of other scripts, emoji, symbols; not ASCII punctuation such as `;`)."""
    text = _PRE_RE.sub(lambda m: _PRE_LOOKUP[m.group(0)], text)
    dropped: list[str] = []
    for name, step in STEPS:
        if name == "charset":
            dropped = _report_dropped(text)
        text = step(text)
    return _PUNCT_RUN.sub(r"\1", text), dropped


def english_normalize(text: str) -> str:
    """Raw English text → the official normalised text (`norm_text`)."""
    return english_normalize_report(text)[0]
