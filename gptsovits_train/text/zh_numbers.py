"""Chinese verbalisation of digit strings (cardinals, decimals, digit-by-digit readings).

Semantics follow the official normaliser (PaddleSpeech origin) exactly, including its choices:
- cardinals use 十/百/千/万/亿 with 零 for internal gaps, and a leading 一十 is shortened to 十
  ("10" → 十, "110000" → 十一万, "1005" → 一千零五, "1050" → 一千零五十);
- decimals read the fractional digits one by one after 点, with trailing zeros dropped
  ("3.20" → 三点二, ".5" → 零点五);
- digit-by-digit readings may use 幺 for 1 (phone numbers, long digit strings).
"""

from __future__ import annotations

DIGIT_CHARS = "零一二三四五六七八九"
#: Unit characters keyed by the number of digits to their right.
_UNITS: tuple[tuple[int, str], ...] = ((8, "亿"), (4, "万"), (3, "千"), (2, "百"), (1, "十"))


def digit_string(digits: str, alt_one: bool = False) -> str:
    """Read each digit on its own ("2024" → 二零二四); with `alt_one`, 1 is read 幺."""
    out = "".join(DIGIT_CHARS[int(d)] for d in digits)
    return out.replace("一", "幺") if alt_one else out


def _cardinal_parts(digits: str, zero_pad: bool = True) -> list[str]:
    """Symbols of a digit string that may carry leading zeros ("05" → [零, 五], "0000" → [])."""
    significant = digits.lstrip("0")
    if not significant:
        return []
    if len(significant) == 1:
        if zero_pad and len(significant) < len(digits):
            return [DIGIT_CHARS[0], DIGIT_CHARS[int(significant)]]
        return [DIGIT_CHARS[int(significant)]]
    # the largest unit that still leaves at least one significant digit on its left
    power, unit = next((p, u) for p, u in _UNITS if p < len(significant))
    return [*_cardinal_parts(digits[:-power]), unit, *_cardinal_parts(digits[-power:])]


def cardinal(digits: str) -> str:
    """Integer digit string → Chinese cardinal ("" → "", "000" → 零)."""
    if not digits:
        return ""
    digits = digits.lstrip("0")
    if not digits:
        return DIGIT_CHARS[0]
    parts = _cardinal_parts(digits)
    if len(parts) >= 2 and parts[0] == "一" and parts[1] == "十":
        parts = parts[1:]
    return "".join(parts)


def number(text: str) -> str:
    """A non-negative number "123", "12.50" or ".5" → its Chinese reading."""
    integer, sep, fraction = text.partition(".")
    if sep and "." in fraction:
        raise ValueError(f"number {text!r} has more than one decimal point")
    out = cardinal(integer)
    fraction = fraction.rstrip("0")
    if fraction:
        out = (out or DIGIT_CHARS[0]) + "点" + digit_string(fraction)
    return out
