"""Word tokens of normalised English text, as NLTK's `TweetTokenizer` gives them, without importing NLTK.

The official English frontend tokenises with `nltk.tokenize.casual.TweetTokenizer().tokenize`.
Importing anything from `nltk` runs `nltk/__init__.py`, which pulls in scipy.stats and much more:
about 1.5-3 CPU-seconds at the first English sentence of a process, for a regular expression.

`english_normalize` only ever outputs ASCII letters, spaces and `' . , ? ! -`. On that alphabet
almost every part of TweetTokenizer's pattern (URLs with a scheme or a slash, phone numbers,
emoticons, HTML tags, arrows, @handles, #hashtags, e-mail addresses, emoji sequences, numbers,
HTML entities) cannot match, and what remains is, in TweetTokenizer's order of preference:

1. a naked domain name ("example.com": letters, `.`/`-` separated parts, `.` and a 2-13 letter
   ending followed by a word boundary);
2. a word with inner apostrophes or dashes ("don't", "rock-and-roll": starts and ends with a letter);
3. a run of letters;
4. ellipsis dots (`.` then one or more `.`, with spaces allowed between them);
5. any other single non-space character;

after runs of 4+ equal non-alphanumeric characters are shortened to 3 (TweetTokenizer's guard
against slow patterns). `tweet_tokenize` uses that on text of this alphabet and hands any other text
to NLTK itself, so its tokens are TweetTokenizer's for every input (tests/test_en_tokenize.py
compares both on the g2p fixture and on random strings of the alphabet).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import cache

LOG = logging.getLogger(__name__)

#: The characters `english_normalize` can output.
_NORMALISED = re.compile(r"[A-Za-z ,.?!'\-]*")
_LONG_RUN = re.compile(r"([^a-zA-Z0-9])\1{3,}")
_TOKEN = re.compile(
    r"""
      [a-z]+(?:[.\-][a-z]+){0,126}\.[a-z]{2,13}\b   # naked domain name
    | [a-z][a-z'\-]+[a-z]                           # word with apostrophes or dashes
    | [a-z]+                                        # word
    | \.(?:\ *\.)+                                  # ellipsis dots
    | \S                                            # anything else but space
    """,
    re.VERBOSE | re.IGNORECASE | re.ASCII,
)


@cache
def _nltk_tokenize() -> Callable[[str], list[str]]:
    from nltk.tokenize.casual import TweetTokenizer

    LOG.debug("text outside the normalised English alphabet: using NLTK's TweetTokenizer")
    tokenize: Callable[[str], list[str]] = TweetTokenizer().tokenize
    return tokenize


def tweet_tokenize(text: str) -> list[str]:
    """`TweetTokenizer().tokenize(text)` (case kept); NLTK is only imported for text that is not
    normalised English."""
    if _NORMALISED.fullmatch(text) is None:
        return _nltk_tokenize()(text)
    return _TOKEN.findall(_LONG_RUN.sub(r"\1\1\1", text))
