"""The text stage of `prepare`: transcript → phones, phone ids, word2ph, norm_text for every clip.

`phonemize_clips(layout, clips, cfg)` is a post-audio stage (`data/stages.py`): it returns the clips it
keeps with `phones`, `phone_ids` (official `cfg.prepare.text.version` table), `word2ph`, `norm_text` and
`text_version` filled in, plus a `Skipped` record (stage `text`) for every clip it drops and a
`WarningItem` for every clip whose text was cleaned.

Per clip:

1. the clip's language (else `cfg.prepare.text.language`); a Mandarin line with Latin words is
   phonemised as mixed Mandarin/English when `cfg.prepare.text.zh_latin == "split"` (default), or
   loses those words as in the official preparation when it is `"drop"`;
2. the official data-prep substitution `%` → `-`, `￥` → `,` (`cfg.prepare.text.official_prereplace`);
3. `gptsovits_train.text.g2p_detailed`.

Skipped (with the reason): empty transcript, unsupported language (ja/ko/yue for now), nothing
pronounceable (only punctuation, emoji, foreign script), a reading outside the phone table, more
phones than `cfg.prepare.text.max_phones`. Cleaned with a warning: characters the frontend cannot read
next to readable text (they are deleted), phones that became `UNK`.

Phonemisation is cheap and deterministic, so a resumed `prepare` simply recomputes it (no files).
"""

from __future__ import annotations

import dataclasses
import logging
import re

from gptsovits_train.config import Config
from gptsovits_train.data.manifest import Clip
from gptsovits_train.data.report_types import Skipped, WarningItem
from gptsovits_train.data.stages import StageResult
from gptsovits_train.layout import DatasetLayout
from gptsovits_train.text import TextError, g2p_detailed, official_prepare_replace, phones_to_ids

LOG = logging.getLogger(__name__)

STAGE = "text"
_LATIN = re.compile(r"[A-Za-zＡ-Ｚａ-ｚ]")


def _excerpt(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def clip_language(clip: Clip, cfg: Config) -> str:
    """The language code the clip's text is phonemised with."""
    tcfg = cfg.prepare.text
    language = (clip.language or tcfg.language).lower()
    if language == "zh" and tcfg.zh_latin == "split" and _LATIN.search(clip.text):
        return "auto"
    return language


def phonemize_clips(layout: DatasetLayout, clips: list[Clip], cfg: Config) -> StageResult:
    """Fill the phoneme fields of every clip; clips whose text cannot be phonemised are skipped."""
    del layout  # no files: the phonemes live in the manifest
    tcfg = cfg.prepare.text
    kept: list[Clip] = []
    skipped: list[Skipped] = []
    warnings: list[WarningItem] = []
    for clip in clips:
        text = clip.text
        if not text.strip():
            skipped.append(Skipped(clip.id, "empty transcript", STAGE))
            continue
        language = clip_language(clip, cfg)
        if tcfg.official_prereplace:
            text = official_prepare_replace(text)
        try:
            result = g2p_detailed(text, language, tcfg.version)
        except TextError as exc:
            skipped.append(Skipped(clip.id, f"text {_excerpt(clip.text)}: {exc}", STAGE))
            continue
        if len(result.phones) > tcfg.max_phones:
            skipped.append(
                Skipped(
                    clip.id,
                    f"text {_excerpt(clip.text)}: {len(result.phones)} phones, more than "
                    f"prepare.text.max_phones={tcfg.max_phones}",
                    STAGE,
                )
            )
            continue
        warnings += [WarningItem(clip.id, f"text {_excerpt(clip.text)}: {w}", STAGE) for w in result.warnings]
        kept.append(
            dataclasses.replace(
                clip,
                phones=result.phones,
                phone_ids=phones_to_ids(result.phones, tcfg.version),
                word2ph=result.word2ph,
                norm_text=result.norm_text,
                text_version=tcfg.version,
            )
        )
    LOG.info(
        "text: %d clips phonemised, %d skipped, %d with cleaned text", len(kept), len(skipped), len(warnings)
    )
    return StageResult(kept, skipped, warnings)
