"""Post-audio stages of `prepare`: the extension point for text (phonemes) and features (HuBERT).

`prepare()` runs in this order (see `data/prepare.py`):

1. sources + transcripts  -> `SourcePlan`
2. audio stage            -> clips: `wavs/<id>.wav`, `spec/<id>.npy`, manifest fields up to `spec`
3. **post-audio stages**  -> each `Stage` gets every clip and returns the clips it keeps (possibly with
   more fields filled in: `phones`, `phone_ids`, `word2ph`, `norm_text`, `text_version`, `ssl`, or a
   `text` filled in by an ASR stage) plus what it skipped and why
4. split, manifest, report

A stage is any callable ``stage(layout, clips, cfg) -> StageResult``. It must

- be resumable on its own: skip work whose output file already exists and is newer than the clip's
  `wavs/<id>.wav` (the audio stage rewrites a wav, keeping its id, whenever the source, its transcript
  or an audio setting changes), write every file atomically (`gptsovits_train.fileio`), and return
  all clips it keeps, old and new;
- never raise for one bad clip: drop it and add a `Skipped(source=clip.id or path, reason, stage=name)`;
- raise `GsvError` only when the whole stage cannot run (missing model, ...).

The stages that run by default come from `data.prepare.default_post_audio_stages(cfg)`; that function
is the one place where the text stage (`data.phonemize`) and the feature stage (HuBERT, `ssl/<id>.npy`)
are registered. This module only defines the interface, so the stages import it and it imports none of
them (no import cycle). Callers (tests, the ASR path) may also pass `stages=[...]` to `prepare()`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from gptsovits_train.config import Config
from gptsovits_train.data.manifest import Clip
from gptsovits_train.data.report_types import Skipped, WarningItem
from gptsovits_train.layout import DatasetLayout

LOG = logging.getLogger(__name__)


@dataclass
class StageResult:
    """What a post-audio stage returns: the clips it keeps, and what it dropped or noted."""

    clips: list[Clip]
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[WarningItem] = field(default_factory=list)


Stage = Callable[[DatasetLayout, list[Clip], Config], StageResult]


def stage_name(stage: Stage) -> str:
    """A stage's name for logs and the report: its `name` attribute, else its function/class name."""
    name = getattr(stage, "name", None)
    if isinstance(name, str) and name:
        return name
    return getattr(stage, "__name__", type(stage).__name__)
