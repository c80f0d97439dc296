"""The GPT stage's view of a prepared dataset: the official dataset filters and the report block.

The official s1 dataset (`AR/data/dataset.py`, gpt-stage facts §4) drops, per clip, in this order:

1. more than `max_sec · hz` semantic codes (54 · 25 = 1350);
2. more than `max_sec · hz / 2.5` phone ids (540);
3. a phone rate `n_phones / (n_codes / hz)` above 25 or below 3 phones per second (exactly 3 and 25 are
   kept).

The clip stays in the dataset (the SoVITS stage uses it); the GPT stage skips it, and `prepare` lists it
with its reason in `report.json` (`gpt.filtered`) instead of dropping it silently as the official loader
does. `gpt_filter_reason` is the one implementation of these rules.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gptsovits_train.data.manifest import Clip
from gptsovits_train.data.report_types import Skipped

LOG = logging.getLogger(__name__)

#: Official `data.max_sec` of s1longer(-v2).yaml.
OFFICIAL_MAX_SEC = 54
#: Semantic codes per second (25 Hz tokens).
SEMANTIC_HZ = 25
GPT_STAGES = ("semantic", "bert")


def gpt_filter_reason(
    n_codes: int, n_phones: int, max_sec: float = OFFICIAL_MAX_SEC, hz: int = SEMANTIC_HZ
) -> str | None:
    """Why the official s1 dataset would drop a clip, or None when it keeps it (rules in the module doc)."""
    if n_codes > max_sec * hz:
        return f"{n_codes} semantic codes, more than max_sec·{hz} = {max_sec * hz:g} (official GPT filter)"
    if n_phones > max_sec * hz / 2.5:
        return f"{n_phones} phones, more than max_sec·{hz}/2.5 = {max_sec * hz / 2.5:g} (official GPT filter)"
    if n_codes == 0:
        return "no semantic codes"
    ratio = n_phones / (n_codes / hz)
    if ratio > 25 or ratio < 3:
        return f"{ratio:.2f} phones per second, outside [3, 25] (official GPT filter)"
    return None


def _n_codes(root: Path, clip: Clip) -> int | None:
    """Number of semantic codes of a clip (read from the .npy header), None without a readable file."""
    if clip.semantic is None:
        return None
    try:
        return int(np.load(root / clip.semantic, mmap_mode="r", allow_pickle=False).shape[0])
    except (OSError, ValueError, IndexError):
        return None


def gpt_report(
    root: Path | str, clips: Sequence[Clip], skipped: Sequence[Skipped], max_sec: float = OFFICIAL_MAX_SEC
) -> dict[str, Any] | None:
    """The `gpt` block of report.json, or None when the dataset was not prepared for the GPT stage.

    Counts clips with semantic codes / BERT features, zh clips without BERT (their GPT input is zeros),
    skips of the GPT stages, and the clips the official filters would drop, with their reasons.
    """
    if not any(c.semantic or c.bert for c in clips) and not any(s.stage in GPT_STAGES for s in skipped):
        return None
    filtered = []
    for clip in clips:
        n_codes = _n_codes(Path(root), clip)
        if n_codes is None or clip.phone_ids is None:
            continue
        reason = gpt_filter_reason(n_codes, len(clip.phone_ids), max_sec)
        if reason is not None:
            filtered.append({"id": clip.id, "split": clip.split, "reason": reason})
    return {
        "clips_with_semantic": sum(1 for c in clips if c.semantic),
        "clips_with_bert": sum(1 for c in clips if c.bert),
        "zh_clips_without_bert": sum(1 for c in clips if c.language == "zh" and not c.bert),
        "skipped": {stage: sum(1 for s in skipped if s.stage == stage) for stage in GPT_STAGES},
        "max_sec": max_sec,
        "filtered_count": len(filtered),
        "filtered": filtered,
    }
