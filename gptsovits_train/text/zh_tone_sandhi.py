"""Mandarin tone sandhi and segment merging, as the official v2 frontend applies them.

Two parts (shared/docs/text-frontend.md §1.2-1.3):

`pre_merge(segments)` re-groups jieba's (word, POS) segments before readings are looked up: 不 with
the next word, `X一X` reduplicated verbs and a lone 一 with the next word, identical neighbours,
runs of third-tone words (≤ 3 characters), and 儿 with the word before it.

`modified_tone(word, pos, finals)` then rewrites the tone digits of one word's finals, in this order:
不 (bu2 before tone 4, neutral inside 看不懂), 一 (yi2 before tone 4, yi4 before other tones, yi1 as an
ordinal or before punctuation, neutral in 看一看, untouched inside numbers), neutral tones
(reduplications, particles, 的/地/得, 了/着/过, 们/子, direction complements, measure-word 个, and
the word list in `resources/zh/neutral_tone_words.txt`), and third-tone sandhi (3-3 → 2-3, with
3- and 4-character words split into halves).

Finals are pypinyin `FINALS_TONE3` strings with 5 for the neutral tone (`"ao3"`, `"e5"`).

Official quirks kept on purpose, because training data must match what the official preparation
produced: if a sentence holds two `X一X` patterns the official 一-merging step fails and is skipped
as a whole; the third-tone merges are skipped likewise when a reading has no tone.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

LOG = logging.getLogger(__name__)

Segment = list[str]  # [word, pos]

#: Sentence-final particles read in the neutral tone.
PARTICLES = "吧呢哈啊呐噻嘛吖嗨呐哦哒额滴哩哟喽啰耶喔诶"
#: Characters after which 一 keeps its first tone.
YI_PUNCTUATION = "：，；。？！“”‘’':,;.?!"


class _MergeAborted(Exception):
    """Where the official merge step raises (and then skips itself), ours aborts the same step."""


@cache
def _word_set(name: str) -> frozenset[str]:
    text = resources.files("gptsovits_train").joinpath(f"resources/zh/{name}").read_text("utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def neutral_tone_words() -> frozenset[str]:
    return _word_set("neutral_tone_words.txt")


def not_neutral_tone_words() -> frozenset[str]:
    return _word_set("not_neutral_tone_words.txt")


def _finals_tone3(word: str) -> list[str]:
    from pypinyin import Style, lazy_pinyin

    return list(lazy_pinyin(word, neutral_tone_with_five=True, style=Style.FINALS_TONE3))


@cache
def load_jieba() -> Any:
    """jieba, imported once: its start-up log silenced and its old regex-escape warnings muted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        import jieba
        import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    return jieba


def split_word(word: str) -> list[str]:
    """Cut a word in two around its shortest jieba search-mode piece ("胡同儿" → ["胡同", "儿"])."""
    pieces = sorted(load_jieba().cut_for_search(word), key=len)
    shortest = pieces[0]
    if word.find(shortest) == 0:
        return [shortest, word[len(shortest) :]]
    return [word[: -len(shortest)], shortest]


def _set_tone(final: str, tone: str) -> str:
    return final[:-1] + tone


def _is_tone(final: str, tone: str) -> bool:
    if not final:
        raise _MergeAborted("empty final")
    return final[-1] == tone


def _all_tone_three(finals: Sequence[str]) -> bool:
    """True if every final has tone 3 (also for an empty list, as upstream)."""
    return all(_is_tone(f, "3") for f in finals)


# -------------------------------------------------------------------------------------- pre-merge
def _merge_bu(seg: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    pending = False
    for token, pos in seg:
        word = "不" + token if pending else token
        pending = word == "不"
        if not pending:
            out.append([word, pos])
    if pending:
        out.append(["不", "d"])
    return out


def _merge_yi(seg: list[Segment]) -> list[Segment]:
    # pass 1: 听 一 听 -> 听一听 (the left word must be a verb; the right copy is dropped if it is one)
    out: list[Segment] = []
    shifted = False  # upstream indexes its output by input position: a second merge fails there
    for i, (word, pos) in enumerate(seg):
        if (
            i >= 1
            and word == "一"
            and i + 1 < len(seg)
            and seg[i - 1][0] == seg[i + 1][0]
            and seg[i - 1][1] == "v"
        ):
            if shifted:
                raise _MergeAborted("second X一X in one sentence")
            out[-1][0] = out[-1][0] + "一" + out[-1][0]
            shifted = True
        elif i >= 2 and seg[i - 1][0] == "一" and seg[i - 2][0] == word and pos == "v":
            shifted = True
        else:
            out.append([word, pos])
    # pass 2: a lone 一 takes the next word
    merged: list[Segment] = []
    for word, pos in out:
        if merged and merged[-1][0] == "一":
            merged[-1][0] += word
        else:
            merged.append([word, pos])
    return merged


def _merge_reduplication(seg: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for word, pos in seg:
        if out and word == out[-1][0]:
            out[-1][0] += word
        else:
            out.append([word, pos])
    return out


def _is_reduplication(word: str) -> bool:
    return len(word) == 2 and word[0] == word[1]


def _edge(finals: list[str], index: int) -> str:
    if not finals:
        raise _MergeAborted("word without reading")
    return finals[index]


def _merge_third_tones(seg: list[Segment], whole_words: bool) -> list[Segment]:
    """Merge neighbours whose readings are all tone 3 (`whole_words`) or meet on two tone-3 syllables."""
    finals = [_finals_tone3(word) for word, _ in seg]
    out: list[Segment] = []
    merged_into_previous = [False] * len(seg)
    for i, (word, pos) in enumerate(seg):
        if i >= 1:
            if whole_words:
                candidate = _all_tone_three(finals[i - 1]) and _all_tone_three(finals[i])
            else:
                candidate = _is_tone(_edge(finals[i - 1], -1), "3") and _is_tone(_edge(finals[i], 0), "3")
            if candidate and not merged_into_previous[i - 1]:
                prev = seg[i - 1][0]
                if not _is_reduplication(prev) and len(prev) + len(word) <= 3:
                    out[-1][0] += word
                    merged_into_previous[i] = True
                    continue
        out.append([word, pos])
    return out


def _merge_er(seg: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for i, (word, pos) in enumerate(seg):
        if i >= 1 and word == "儿" and seg[i - 1][0] != "#":
            out[-1][0] += word
        else:
            out.append([word, pos])
    return out


def pre_merge(segments: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Re-group jieba (word, POS) segments before tone sandhi (see the module docstring)."""
    seg: list[Segment] = [[w, p] for w, p in segments]
    seg = _merge_bu(seg)
    for step in (_merge_yi, _merge_reduplication, _merge_third_tones_whole, _merge_third_tones_at_boundary):
        try:
            seg = step(seg)
        except _MergeAborted as exc:
            LOG.debug("tone-sandhi merge %s skipped (%s), as the official frontend does", step.__name__, exc)
    seg = _merge_er(seg)
    return [(w, p) for w, p in seg]


def _merge_third_tones_whole(seg: list[Segment]) -> list[Segment]:
    return _merge_third_tones(seg, whole_words=True)


def _merge_third_tones_at_boundary(seg: list[Segment]) -> list[Segment]:
    return _merge_third_tones(seg, whole_words=False)


# ------------------------------------------------------------------------------------ tone changes
def _bu_sandhi(word: str, finals: list[str]) -> list[str]:
    if len(word) == 3 and word[1] == "不":
        finals[1] = _set_tone(finals[1], "5")  # 看不懂
        return finals
    for i, char in enumerate(word):
        if char == "不" and i + 1 < len(word) and finals[i + 1][-1] == "4":
            finals[i] = _set_tone(finals[i], "2")  # 不怕
    return finals


def _yi_sandhi(word: str, finals: list[str]) -> list[str]:
    if "一" in word and all(c.isnumeric() for c in word if c != "一"):
        return finals  # inside a number: 一零零, 二一零
    if len(word) == 3 and word[1] == "一" and word[0] == word[-1]:
        finals[1] = _set_tone(finals[1], "5")  # 看一看
    elif word.startswith("第一"):
        finals[1] = _set_tone(finals[1], "1")
    else:
        for i, char in enumerate(word):
            if char == "一" and i + 1 < len(word):
                if finals[i + 1][-1] == "4":
                    finals[i] = _set_tone(finals[i], "2")  # 一段
                elif word[i + 1] not in YI_PUNCTUATION:
                    finals[i] = _set_tone(finals[i], "4")  # 一天
    return finals


def _neutral_index(word: str, pos: str, neutral: frozenset[str], not_neutral: frozenset[str]) -> int | None:
    """The syllable that the first matching word-level neutral-tone rule makes neutral, if any."""
    if not word:
        return None
    last = len(word) - 1
    if word[-1] in PARTICLES or word[-1] in "的地得":
        return last
    if len(word) == 1 and word in "了着过" and pos in {"ul", "uz", "ug"}:
        return last  # 走了, 看着, 去过
    if len(word) > 1 and word[-1] in "们子" and pos in {"r", "n"} and word not in not_neutral:
        return last
    if len(word) > 1 and word[-1] in "上下里" and pos in {"s", "l", "f"}:
        return last  # 桌上, 地下, 家里
    if len(word) > 1 and word[-1] in "来去" and word[-2] in "上下进出回过起开":
        return last  # 上来, 下去
    ge = word.find("个")
    if (ge >= 1 and (word[ge - 1].isnumeric() or word[ge - 1] in "几有两半多各整每做是")) or word == "个":
        return ge  # measure word 个
    if word in neutral or word[-2:] in neutral:
        return last
    return None


def _neutral_sandhi(word: str, pos: str, finals: list[str]) -> list[str]:
    neutral, not_neutral = neutral_tone_words(), not_neutral_tone_words()
    for j in range(1, len(word)):  # reduplicated nouns, verbs, adjectives: 奶奶, 试试
        if word[j] == word[j - 1] and pos[0] in {"n", "v", "a"} and word not in not_neutral:
            finals[j] = _set_tone(finals[j], "5")
    index = _neutral_index(word, pos, neutral, not_neutral)
    if index is not None:
        finals[index] = _set_tone(finals[index], "5")

    halves = split_word(word)
    cut = len(halves[0])
    parts = [finals[:cut], finals[cut:]]
    for half, part in zip(halves, parts, strict=True):
        if half in neutral or half[-2:] in neutral:
            part[-1] = _set_tone(part[-1], "5")
    return parts[0] + parts[1]


def _three_sandhi(word: str, finals: list[str]) -> list[str]:
    if len(word) == 2 and _all_tone_three(finals):
        finals[0] = _set_tone(finals[0], "2")
    elif len(word) == 3:
        halves = split_word(word)
        cut = len(halves[0])
        if _all_tone_three(finals):
            if cut == 2:  # 蒙古/包
                finals[0] = _set_tone(finals[0], "2")
                finals[1] = _set_tone(finals[1], "2")
            elif cut == 1:  # 纸/老虎
                finals[1] = _set_tone(finals[1], "2")
        else:
            parts = [finals[:cut], finals[cut:]]
            for i, part in enumerate(parts):
                if _all_tone_three(part) and len(part) == 2:
                    part[0] = _set_tone(part[0], "2")  # 所有/人
                elif i == 1 and not _all_tone_three(part) and part[0][-1] == "3" and parts[0][-1][-1] == "3":
                    parts[0][-1] = _set_tone(parts[0][-1], "2")  # 好/喜欢
            finals = parts[0] + parts[1]
    elif len(word) == 4:  # idioms: two halves of two
        halves_finals = [finals[:2], finals[2:]]
        finals = []
        for part in halves_finals:
            if _all_tone_three(part):
                part[0] = _set_tone(part[0], "2")
            finals += part
    return finals


def modified_tone(word: str, pos: str, finals: list[str]) -> list[str]:
    """Apply 不, 一, neutral-tone and third-tone sandhi to one word's finals (same length as `word`)."""
    finals = _bu_sandhi(word, list(finals))
    finals = _yi_sandhi(word, finals)
    finals = _neutral_sandhi(word, pos, finals)
    return _three_sandhi(word, finals)
