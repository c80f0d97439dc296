"""Chinese text normalisation: numbers, dates, times, units and symbols → Chinese characters.

Behaviour matches the official v2 frontend's `TextNormalizer` (a PaddleSpeech port) rule for rule,
quirks included, because the phonemes must match what the official data preparation produces.
The rules, in the order they run on every sentence (shared/docs/text-frontend.md §1.1):

 1. traditional → simplified, character by character (`resources/zh/t2s_chars.tsv`);
 2. full-width Latin letters and digits → ASCII, ideographic space → space;
 3. dates: `2024年3月15日` (year read digit by digit), `2024-03-15` / `2024/03/15` / `2024.03.15`;
 4. time ranges and clock times: `8:30-12:00` → 八点半至十二点, `10:05` → 十点零五分
    (quirk kept: in a range, the second time says 半 whenever the *first* minute is 30);
 5. `~` between two numbers with units becomes 至 (`5cm~10cm`);
 6. temperatures: `-10°C` → 零下十度, `25度` → 二十五度;
 7. a unit table applied as plain substring replacement with no number required (`km` → 千米,
    `m` → 米, `s` → 秒...): "Tom" becomes "To米" (the letters are dropped later);
 8. arithmetic `a+b=c` (also single Latin letters as operands) → 加/减/乘/除/等于, repeated until
    no operator between two operands is left;
 9. superscript powers `x²` → x的2次方;
10. fractions `1/3` → 三分之一; 11. percentages `50%` → 百分之五十;
12. mobile, landline and 400 numbers, digit by digit with 1 → 幺;
13. number ranges `1-5` / `1~5` → 一到五; 14. negative integers → 负…; 15. decimals;
16. a number before a measure word (`256页` → 二百五十六页; `+` before it → 多);
17. any other run of 3+ digits is read digit by digit with 1 → 幺 ("1000" → 幺零零零);
18. the remaining numbers as cardinals ("1,234" → 一,二百三十四: no thousands separators);
19. `/` → 每, ①-⑩ and Greek letters → words, `+ - × ÷ =` → 加 减 乘 除 等, and the leftover
    symbols `-—《》【】<=>{}()（）#&@“”^_|\\` are deleted.

Before that, the text is split into sentences: ASCII spaces and the symbols `—《》【】<>{}()（）#&@“”^_|\\`
are removed, and a sentence ends after any of `：、，；。？！,;?!` (plus an optional closing `”’`).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import cache
from importlib import resources

from gptsovits_train.text.zh_numbers import cardinal, digit_string, number

LOG = logging.getLogger(__name__)

# ------------------------------------------------------------------------------- character tables


@cache
def traditional_to_simplified_table() -> dict[int, str]:
    """str.translate table built from `resources/zh/t2s_chars.tsv` (see scripts/gen_zh_t2s.py)."""
    text = resources.files("gptsovits_train").joinpath("resources/zh/t2s_chars.tsv").read_text("utf-8")
    table: dict[int, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        trad, simp = line.split("\t")
        table[ord(trad)] = simp
    return table


def to_simplified(text: str) -> str:
    return text.translate(traditional_to_simplified_table())


_FULLWIDTH = {ord(c) + 0xFEE0: c for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"}
_FULLWIDTH[0x3000] = " "


def _ascii_digits(text: str) -> str:
    """Other scripts' decimal digits → ASCII (the official rules would crash on them)."""
    if text.isascii():
        return text
    return "".join(
        str(unicodedata.digit(c)) if not c.isascii() and unicodedata.category(c) == "Nd" else c for c in text
    )


# ------------------------------------------------------------------------------------- splitting
_SPLIT_DELETE = re.compile(r"[—《》【】<>{}()（）#&@“”^_|\\]")
_SENTENCE_END = re.compile(r"([：、，；。？！,;?!][”’]?)")


def split_sentences(text: str) -> list[str]:
    """Remove ASCII spaces and bracket-like symbols, then cut after sentence punctuation."""
    text = _SPLIT_DELETE.sub("", text.replace(" ", ""))
    text = _SENTENCE_END.sub("\\1\n", text).strip()
    return [s.strip() for s in re.split(r"\n+", text)]


# ------------------------------------------------------------------------------------ dates/times
_DATE = re.compile(r"([0-9]{4}|[0-9]{2})年((0?[1-9]|1[0-2])月)?((0?[1-9]|[12][0-9]|30|31)([日号]))?")
_DATE_NUMERIC = re.compile(r"([0-9]{4})([- /.])(0[1-9]|1[012])\2(0[1-9]|[12][0-9]|3[01])")
_CLOCK = r"([01]?[0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?"
_TIME = re.compile(_CLOCK)
_TIME_RANGE = re.compile(_CLOCK + r"[~-]" + _CLOCK)


def _date(m: re.Match[str]) -> str:
    out = digit_string(m.group(1)) + "年"
    if m.group(3):
        out += cardinal(m.group(3)) + "月"
    if m.group(5):
        out += cardinal(m.group(5)) + m.group(6)
    return out


def _date_numeric(m: re.Match[str]) -> str:
    return f"{digit_string(m.group(1))}年{cardinal(m.group(3))}月{cardinal(m.group(4))}日"


def _clock_part(digits: str) -> str:
    """Minutes/seconds: a leading zero is read (05 → 零五)."""
    out = number(digits.lstrip("0"))
    return "零" + out if digits.startswith("0") else out


def _clock(hour: str, minute: str, second: str | None, half: bool) -> str:
    out = number(hour) + "点"
    if minute.lstrip("0"):
        out += "半" if half else _clock_part(minute) + "分"
    if second and second.lstrip("0"):
        out += _clock_part(second) + "秒"
    return out


def _time(m: re.Match[str]) -> str:
    hour, minute, second = m.group(1), m.group(2), m.group(3)
    return _clock(hour, minute, second, int(minute) == 30)


def _time_range(m: re.Match[str]) -> str:
    hour, minute, second = m.group(1), m.group(2), m.group(3)
    first_is_half = int(minute) == 30
    start = _clock(hour, minute, second, first_is_half)
    # official quirk: the end time's 半 is decided by the *start* minute
    end = _clock(m.group(4), m.group(5), m.group(6), first_is_half)
    return start + "至" + end


# ------------------------------------------------------------------------------ numbers and units
_NUM = r"-?[0-9]+(?:\.[0-9]+)?"
_NUM_OR_POINT = rf"(?:{_NUM}|\.[0-9]+)"
_RANGE_UNITS = (
    "%|°C|℃|度|摄氏度|cm2|cm²|cm3|cm³|cm|db|ds|kg|km|m2|m²|m³|m3|ml|m|mm|s"  # order matters for regex
)
_TO_RANGE = re.compile(rf"{_NUM_OR_POINT}(?:{_RANGE_UNITS})~{_NUM_OR_POINT}(?:{_RANGE_UNITS})")
_TEMPERATURE = re.compile(r"(-?)([0-9]+(?:\.[0-9]+)?)(°C|℃|度|摄氏度)")

#: Unit abbreviations, replaced as plain substrings in this order (so "mm" never matches: "m" is first).
UNIT_WORDS: tuple[tuple[str, str], ...] = (
    ("cm2", "平方厘米"), ("cm²", "平方厘米"), ("cm3", "立方厘米"), ("cm³", "立方厘米"), ("cm", "厘米"),
    ("db", "分贝"), ("ds", "毫秒"), ("kg", "千克"), ("km", "千米"),
    ("m2", "平方米"), ("m²", "平方米"), ("m³", "立方米"), ("m3", "立方米"), ("ml", "毫升"),
    ("m", "米"), ("mm", "毫米"), ("s", "秒"),
)  # fmt: skip

_POWER_CHARS = "⁰¹²³⁴⁵⁶⁷⁸⁹ˣʸⁿ"
_POWER_MAP = dict(zip(_POWER_CHARS, "0123456789xyn", strict=True))
_OPERAND = rf"(?:-?[0-9]+(?:\.[0-9]+)?[{_POWER_CHARS}]*|\.[0-9]+[{_POWER_CHARS}]*|[A-Za-z][{_POWER_CHARS}]*)"
_ARITHMETIC = re.compile(rf"({_OPERAND})([-+×÷=])({_OPERAND})")
_OPERATOR_WORDS = {"+": "加", "-": "减", "×": "乘", "÷": "除", "=": "等于"}
_POWER = re.compile(rf"[{_POWER_CHARS}]+")

_FRACTION = re.compile(r"(-?)([0-9]+)/([0-9]+)")
_PERCENT = re.compile(r"(-?)([0-9]+(?:\.[0-9]+)?)%")
_MOBILE = re.compile(r"(?<![0-9])(?:\+?86 ?)?1(?:[38][0-9]|5[0-35-9]|7[678]|9[89])[0-9]{8}(?![0-9])")
_LANDLINE = re.compile(r"(?<![0-9])(?:0(?:10|2[1-3]|[3-9][0-9]{2})-?)?[1-9][0-9]{6,7}(?![0-9])")
_SERVICE_NUMBER = re.compile(r"400-?[0-9]{3}-?[0-9]{4}")
_RANGE = re.compile(r"(?<![0-9+\-×÷=])(-?[0-9]+(?:\.[0-9]+)?)[-~](-?[0-9]+(?:\.[0-9]+)?)(?![0-9+\-×÷=])")
_NEGATIVE = re.compile(r"-([0-9]+)")
_DECIMAL = re.compile(r"(-?)([0-9]+\.[0-9]+)|(\.[0-9]+)")
_ANY_NUMBER = re.compile(r"(-?)([0-9]+(?:\.[0-9]+)?)|(\.[0-9]+)")
_LONG_DIGITS = re.compile(r"[0-9]{3,}")

# Measure words after which a number is read as a cardinal. What matters is only whether some
# measure word starts right after the number (the matched text is kept as is).
_MEASURE_CHARS = (
    "处台架枚趟幅平方堵间床株批项例列篇栋注亩封艘把目套段人所朵匹张座回场尾条个首阙阵网炮顶丘棵只"
    "支袭辆挑担颗壳窠曲墙群腔砣客贯扎捆刀令打手罗坡山岭江溪钟队单双对出口头脚板跳枝件贴针线管名"
    "位身堂课本页家户层幢堆根道面片丸泡粒辈代伏"  # things, people, places, flat objects
    "丝毫厘分钱两斤铢石钧锱忽寸尺丈里寻常铺程米撮勺合升斗吨"  # weights and lengths
    "盘碗碟叠桶笼盆盒杯斛锅簋篮罐瓶壶卮盏箩箱煲啖袋钵"  # containers
    "年月日季刻时周天秒旬纪岁世更夜春夏秋冬"  # time
    "块元角毛亿万千百"  # money and magnitudes
)
_MEASURE_WORDS = ("微克", "公分", "微米", "小时", "美元", "十吨")
_QUANTIFIED = re.compile(rf"([0-9]+)([多余几+])?({'|'.join(_MEASURE_WORDS)}|[{_MEASURE_CHARS}])")


def _signed(sign: str, word: str = "负") -> str:
    return word if sign else ""


def _temperature(m: re.Match[str]) -> str:
    unit = "摄氏度" if m.group(3) == "摄氏度" else "度"
    return _signed(m.group(1), "零下") + number(m.group(2)) + unit


def _fraction(m: re.Match[str]) -> str:
    return f"{_signed(m.group(1))}{number(m.group(3))}分之{number(m.group(2))}"


def _percent(m: re.Match[str]) -> str:
    return f"{_signed(m.group(1))}百分之{number(m.group(2))}"


def _mobile(m: re.Match[str]) -> str:
    return "，".join(digit_string(part, alt_one=True) for part in m.group(0).strip("+").split())


def _landline(m: re.Match[str]) -> str:
    return "，".join(digit_string(part, alt_one=True) for part in m.group(0).split("-"))


def _signed_number(m: re.Match[str]) -> str:
    """Shared by decimals and plain numbers: group 1 sign, 2 number, 3 a bare ".5"."""
    if m.group(3):
        return number(m.group(3))
    return _signed(m.group(1)) + number(m.group(2))


def _range(m: re.Match[str]) -> str:
    first = _ANY_NUMBER.sub(_signed_number, m.group(1))
    second = _ANY_NUMBER.sub(_signed_number, m.group(2))
    return f"{first}到{second}"


def _quantified(m: re.Match[str]) -> str:
    approx = m.group(2) or ""
    return number(m.group(1)) + ("多" if approx == "+" else approx) + m.group(3)


def _replace_units(sentence: str) -> str:
    for abbr, word in UNIT_WORDS:
        sentence = sentence.replace(abbr, word)
    return sentence


def _arithmetic(sentence: str) -> str:
    while _ARITHMETIC.search(sentence):
        sentence = _ARITHMETIC.sub(lambda m: m.group(1) + _OPERATOR_WORDS[m.group(2)] + m.group(3), sentence)
    return sentence


# -------------------------------------------------------------------------------- post-replacement
_SYMBOL_WORDS: tuple[tuple[str, str], ...] = (
    ("/", "每"),
    *zip("①②③④⑤⑥⑦⑧⑨⑩", "一二三四五六七八九十", strict=True),
    ("α", "阿尔法"), ("β", "贝塔"), ("γ", "伽玛"), ("Γ", "伽玛"), ("δ", "德尔塔"), ("Δ", "德尔塔"),
    ("ε", "艾普西龙"), ("ζ", "捷塔"), ("η", "依塔"), ("θ", "西塔"), ("Θ", "西塔"), ("ι", "艾欧塔"),
    ("κ", "喀帕"), ("λ", "拉姆达"), ("Λ", "拉姆达"), ("μ", "缪"), ("ν", "拗"), ("ξ", "克西"),
    ("Ξ", "克西"), ("ο", "欧米克伦"), ("π", "派"), ("Π", "派"), ("ρ", "肉"), ("ς", "西格玛"),
    ("Σ", "西格玛"), ("σ", "西格玛"), ("τ", "套"), ("υ", "宇普西龙"), ("φ", "服艾"), ("Φ", "服艾"),
    ("χ", "器"), ("ψ", "普赛"), ("Ψ", "普赛"), ("ω", "欧米伽"), ("Ω", "欧米伽"),
    ("+", "加"), ("-", "减"), ("×", "乘"), ("÷", "除"), ("=", "等"),
)  # fmt: skip
_POST_DELETE = re.compile(r"[-—《》【】<=>{}()（）#&@“”^_|\\]")


def _post_replace(sentence: str) -> str:
    for symbol, word in _SYMBOL_WORDS:
        sentence = sentence.replace(symbol, word)
    return _POST_DELETE.sub("", sentence)


# ------------------------------------------------------------------------------------------ public
def normalize_sentence(sentence: str) -> str:
    """Verbalise one sentence (see the module docstring for the rules and their order)."""
    s = to_simplified(sentence).translate(_FULLWIDTH)
    s = _ascii_digits(s)
    s = _DATE.sub(_date, s)
    s = _DATE_NUMERIC.sub(_date_numeric, s)
    s = _TIME_RANGE.sub(_time_range, s)
    s = _TIME.sub(_time, s)
    s = _TO_RANGE.sub(lambda m: m.group(0).replace("~", "至"), s)
    s = _TEMPERATURE.sub(_temperature, s)
    s = _replace_units(s)
    s = _arithmetic(s)
    s = _POWER.sub(lambda m: "的" + "".join(_POWER_MAP[c] for c in m.group(0)) + "次方", s)
    s = _FRACTION.sub(_fraction, s)
    s = _PERCENT.sub(_percent, s)
    s = _MOBILE.sub(_mobile, s)
    s = _LANDLINE.sub(_landline, s)
    s = _SERVICE_NUMBER.sub(_landline, s)
    s = _RANGE.sub(_range, s)
    s = _NEGATIVE.sub(lambda m: "负" + number(m.group(1)), s)
    s = _DECIMAL.sub(_signed_number, s)
    s = _QUANTIFIED.sub(_quantified, s)
    s = _LONG_DIGITS.sub(lambda m: digit_string(m.group(0), alt_one=True), s)
    s = _ANY_NUMBER.sub(_signed_number, s)
    return _post_replace(s)


def normalize_sentences(text: str) -> list[str]:
    """Split `text` into sentences and verbalise each."""
    return [normalize_sentence(s) for s in split_sentences(text)]
