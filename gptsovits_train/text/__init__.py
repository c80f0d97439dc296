"""Text → phonemes for GPT-SoVITS v2: the official `clean_text` behaviour for Mandarin and English.

Public entry points:

- `g2p(text, language)` → `(phones, word2ph, norm_text)`, as the official `clean_text(text,
  language, version)`: `phones` are symbols of the official table (unknown ones become `UNK`),
  `word2ph` gives the phones per character of `norm_text` (Mandarin only, else None).
- `g2p_detailed(...)` → the same plus the warnings about what was cleaned away.
- `phones_to_ids(phones, version="v2")` → ids in the official table (`symbols.symbols(version)`).
- `official_prepare_replace(text)`: the substitution the official data preparation applies to every
  transcript before `clean_text` (`%` → `-`, `￥` → `,`).

Languages:

- `zh`: the official v2 Mandarin frontend (`chinese.py`). Latin letters are deleted, as upstream.
  A text containing `￥` or `^` takes the official special-silence path: the character becomes a
  comma, the text goes through the normal pipeline, and then *every* `,` phone is renamed `SP2`
  (for `￥`) or `SP3` (for `^`).
- `en`: the official English frontend (`english.py`); when fewer than 4 phones come out, a `,`
  phone is put in front, as `clean_text` does.
- `auto` (alias `mixed`): the text is split by script into Mandarin and English runs
  (`mixed.py`), each run goes through its own frontend (with the rules above), and the phones are
  concatenated, as the official inference does for mixed input. `word2ph` is None when an English
  run is present.
- `ja`, `ko`, `yue`: not supported yet (TextError).

Bad text raises `TextError` (a `GsvError`) with a one-line reason; `prepare` turns it into a
per-clip skip. Cases: empty text; nothing pronounceable left after normalisation (only
punctuation, emoji, characters outside the Mandarin/English scripts); a reading that is not in the
phone table; an unsupported language. Characters that are merely cleaned away (a Latin word in `zh`
text, an emoji next to real text) are reported as warnings, not errors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from gptsovits_train.errors import GsvError

LOG = logging.getLogger(__name__)


class TextError(GsvError):
    """A transcript that cannot be turned into phonemes; the message is the reason."""


# Imported after TextError: the frontends import it from here.
from gptsovits_train.text.symbols import PUNCTUATION, UNK, map_unknown, phones_to_ids  # noqa: E402

SUPPORTED_LANGUAGES: tuple[str, ...] = ("zh", "en", "auto")
_ALIASES = {"mixed": "auto", "jp": "ja", "all_zh": "zh", "all_ja": "ja", "all_ko": "ko", "all_yue": "yue"}
_NOT_YET = {"ja": "Japanese", "ko": "Korean", "yue": "Cantonese"}
#: Phones that carry no sound of their own.
SILENT_PHONES = frozenset(PUNCTUATION) | {"SP", "SP2", "SP3"}
_SPECIAL_SILENCE = (("￥", "SP2"), ("^", "SP3"))

__all__ = [
    "SUPPORTED_LANGUAGES",
    "UNK",
    "G2PResult",
    "TextError",
    "g2p",
    "g2p_detailed",
    "g2p_runs",
    "normalize_language",
    "official_prepare_replace",
    "phones_to_ids",
]


@dataclass(frozen=True)
class G2PResult:
    """phones (official symbols), word2ph (zh: phones per norm_text character), norm_text, warnings."""

    phones: list[str]
    word2ph: list[int] | None
    norm_text: str
    warnings: list[str] = field(default_factory=list)

    def as_tuple(self) -> tuple[list[str], list[int] | None, str]:
        return self.phones, self.word2ph, self.norm_text


def official_prepare_replace(text: str) -> str:
    """What the official data preparation (`1-get-text.py`) does to a transcript before `clean_text`.

    `%` becomes `-` and `￥` becomes `,`. Consequences kept for parity: percentages are not read
    ("37.5%" → 三十七点五减 in zh, "three point five-" in en), and only `^` can reach the
    special-silence path in training data.
    """
    return text.replace("%", "-").replace("￥", ",")


def normalize_language(language: str) -> str:
    """Canonical language code (`zh`, `en`, `auto`); TextError for unsupported ones."""
    lang = language.strip().lower()
    lang = _ALIASES.get(lang, lang)
    if lang in _NOT_YET:
        raise TextError(f"{_NOT_YET[lang]} text is not supported yet (supported: zh, en, auto)")
    if lang not in SUPPORTED_LANGUAGES:
        raise TextError(f"unknown language {language!r} (supported: zh, en, auto)")
    return lang


# ------------------------------------------------------------------------------------- frontends
def _zh(text: str) -> G2PResult:
    from gptsovits_train.text.chinese import chinese_g2p, chinese_normalize_report

    for char, silence in _SPECIAL_SILENCE:
        if char in text:
            norm, dropped = chinese_normalize_report(text.replace(char, ","))
            phones, word2ph = chinese_g2p(norm)
            phones = [silence if ph == "," else ph for ph in phones]
            return G2PResult(phones, word2ph, norm, _dropped_warnings(dropped))
    norm, dropped = chinese_normalize_report(text)
    phones, word2ph = chinese_g2p(norm)
    return G2PResult(phones, word2ph, norm, _dropped_warnings(dropped))


def _dropped_warnings(dropped: list[str], frontend: str = "Mandarin") -> list[str]:
    if not dropped:
        return []
    shown = ", ".join(repr(d) for d in dropped[:8]) + (" ..." if len(dropped) > 8 else "")
    return [f"dropped characters the {frontend} frontend cannot read: {shown}"]


def _en(text: str) -> G2PResult:
    try:
        from gptsovits_train.text.english import english_normalize_report, english_phones
    except ImportError as exc:  # the English frontend is a separate module
        raise TextError(f"the English frontend is not available ({exc})") from exc

    # = english_g2p(text), keeping what the normaliser deleted for the warnings
    norm, dropped = english_normalize_report(text)
    phones = english_phones(norm)
    if len(phones) < 4:
        phones = [",", *phones]
    return G2PResult(phones, None, norm, _dropped_warnings(dropped, "English"))


def g2p_runs(text: str) -> list[tuple[str, G2PResult]]:
    """The `auto` path run by run: `[(language, result), ...]` for the Mandarin ("zh") and English ("en")
    runs of `text` in order (`mixed.split_by_script`), each through its own frontend. Concatenated, the
    phones are those of `g2p(text, "auto")` before UNK mapping (which keeps their count); the GPT stage
    uses the runs to give BERT features to the Mandarin runs only, as the official inference does."""
    from gptsovits_train.text.mixed import split_by_script

    return [(lang, _zh(part) if lang == "zh" else _en(part)) for lang, part in split_by_script(text)]


def _auto(text: str) -> G2PResult:
    runs = g2p_runs(text)
    results = [r for _, r in runs]
    phones = [ph for r in results for ph in r.phones]
    norm = "".join(r.norm_text for r in results)
    warnings = [w for r in results for w in r.warnings]
    word2ph: list[int] | None = None
    if all(lang == "zh" for lang, _ in runs):
        word2ph = [n for r in results for n in (r.word2ph or [])]
    return G2PResult(phones, word2ph, norm, warnings)


def g2p_detailed(text: str, language: str, version: str = "v2") -> G2PResult:
    """`g2p` with the warnings kept (what was dropped, which phones became UNK)."""
    lang = normalize_language(language)
    if not text or not text.strip():
        raise TextError("empty text")
    if lang == "zh":
        result = _zh(text)
    elif lang == "en":
        result = _en(text)
    else:
        result = _auto(text)
    if not any(ph not in SILENT_PHONES for ph in result.phones):
        what = "; ".join(result.warnings) if result.warnings else f"normalised text {result.norm_text!r}"
        raise TextError(f"nothing pronounceable in the text ({what})")
    phones, unknown = map_unknown(result.phones, version)
    warnings = list(result.warnings)
    if unknown:
        warnings.append(f"phones not in the {version} table became UNK: {' '.join(unknown)}")
    if result.word2ph is not None and (
        sum(result.word2ph) != len(phones) or len(result.word2ph) != len(result.norm_text)
    ):
        raise RuntimeError(f"word2ph does not line up with phones/norm_text for {text!r}")
    return G2PResult(phones, result.word2ph, result.norm_text, warnings)


def g2p(text: str, language: str, version: str = "v2") -> tuple[list[str], list[int] | None, str]:
    """Text → (phones, word2ph, norm_text), as the official `clean_text(text, language, version)`.

    Raises TextError with the reason for text that cannot be phonemised. Warnings (dropped
    characters, UNK phones) are logged; use `g2p_detailed` to get them.
    """
    result = g2p_detailed(text, language, version)
    for warning in result.warnings:
        LOG.warning("%s (text %r)", warning, text)
    return result.as_tuple()
