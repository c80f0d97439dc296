"""Split a mixed Mandarin/English line by script, so each run can go through its own frontend.

An English run is a sequence of Latin words (letters, then letters/digits/apostrophes/hyphens),
possibly several words joined by spaces and light punctuation (`hello, world`). Everything else —
Chinese characters, digits that stand on their own, Chinese punctuation — is Mandarin; digits next
to a Chinese character are read in Chinese (`3个apple` → 三个 + apple), digits inside a Latin word
stay English (`GPT4`). Full-width Latin letters and digits count as their ASCII forms.

The official training preparation has one language per line (a Mandarin line simply loses its
Latin letters); its inference splits mixed input into language runs in the same spirit
(LangSegmenter), which is what `g2p(text, "auto")` reproduces for training text.
"""

from __future__ import annotations

import logging
import re

LOG = logging.getLogger(__name__)

_FULLWIDTH = {ord(c) + 0xFEE0: c for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"}
_WORD = r"[A-Za-z][A-Za-z0-9'’\-]*"
_ENGLISH_RUN = re.compile(rf"{_WORD}(?:[ \t,.!?;:'\"’-]+{_WORD})*")


def split_by_script(text: str) -> list[tuple[str, str]]:
    """`text` → [(language, part), ...] in order, language "zh" or "en"; blank parts are dropped.

    >>> split_by_script("我用iPhone给妈妈打电话")
    [('zh', '我用'), ('en', 'iPhone'), ('zh', '给妈妈打电话')]
    """
    text = text.translate(_FULLWIDTH)
    parts: list[tuple[str, str]] = []
    pos = 0
    for m in _ENGLISH_RUN.finditer(text):
        if m.start() > pos:
            parts.append(("zh", text[pos : m.start()]))
        parts.append(("en", m.group(0)))
        pos = m.end()
    if pos < len(text):
        parts.append(("zh", text[pos:]))
    return [(lang, part) for lang, part in parts if part.strip()]
