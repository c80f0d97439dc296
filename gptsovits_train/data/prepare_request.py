"""What `gsv-train prepare` was asked for (`PrepareRequest`) and `run_prepare`, the one call it makes.

`run_prepare` puts the command's options into the config (split seed and ratio, HuBERT model, device),
picks the HuBERT that `download-pretrained` fetched when none is named, chooses the stages (ASR first when
asked for) and runs `prepare()` — or imports an official experiment folder (`--from-official`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from gptsovits_train.config import Config
from gptsovits_train.data.prepare import default_post_audio_stages, prepare
from gptsovits_train.data.report import PrepareReport
from gptsovits_train.data.stages import Stage

LOG = logging.getLogger(__name__)

SectionT = TypeVar("SectionT", bound=BaseModel)


@dataclass
class PrepareRequest:
    """The options of one `gsv-train prepare` call (already checked by the command)."""

    out: Path
    sources: list[Path] = field(default_factory=list)
    transcripts: list[Path] = field(default_factory=list)
    language: str | None = None
    speaker: str | None = None
    workers: int | None = None
    seed: int | None = None
    val_ratio: float | None = None
    val_list: Path | None = None
    slice_only: bool = False
    force: bool = False
    hubert: str | None = None
    device: str | None = None
    asr: Path | None = None  # a local Whisper folder: transcribe the clips that have no transcript
    from_official: Path | None = None  # an official experiment folder to import instead
    progress: bool = True


def run_prepare(request: PrepareRequest, cfg: Config) -> PrepareReport:
    """Prepare (or import) the dataset `request` asks for. `cfg` is updated with the request's options.

    Raises:
        GsvError: the run cannot start or finish (what finished is kept; a rerun resumes).
    """
    apply_request(request, cfg)
    if request.from_official is not None:
        from gptsovits_train.data.official_import import import_official

        return import_official(
            request.from_official,
            request.out,
            cfg,
            list_file=request.transcripts[0] if request.transcripts else None,
            force=request.force,
        )
    if not request.slice_only:
        use_downloaded_hubert(cfg)
    stages: list[Stage] | None = None
    if request.asr is not None:
        from gptsovits_train.data.asr import AsrStage

        stages = [AsrStage(request.asr, device=cfg.prepare.features.device), *default_post_audio_stages(cfg)]
    return prepare(
        request.sources,
        request.out,
        cfg,
        transcripts=request.transcripts,
        language=request.language,
        speaker=request.speaker,
        workers=request.workers,
        val_list=request.val_list,
        slice_only=request.slice_only,
        keep_untranscribed=request.asr is not None,
        force=request.force,
        stages=stages,
        progress=request.progress,
    )


def apply_request(request: PrepareRequest, cfg: Config) -> None:
    """Put the options that override config keys into `cfg` (split seed/ratio, HuBERT model, device)."""
    cfg.prepare.split = _updated(cfg.prepare.split, seed=request.seed, val_ratio=request.val_ratio)
    cfg.prepare.features = _updated(cfg.prepare.features, hubert=request.hubert, device=request.device)


def _updated(section: SectionT, **values: object) -> SectionT:
    """`section` with the given values set (those that are None are left as they are)."""
    updates = {key: value for key, value in values.items() if value is not None}
    return section.model_copy(update=updates) if updates else section


def use_downloaded_hubert(cfg: Config) -> None:
    """Use the downloaded chinese-hubert-base when neither --hubert nor the config names a model."""
    if cfg.prepare.features.hubert:
        return
    from gptsovits_train.pretrained import find_pretrained

    found = find_pretrained()
    if found is not None and found.hubert_dir is not None:
        LOG.info("using the downloaded HuBERT in %s", found.hubert_dir)
        cfg.prepare.features = cfg.prepare.features.model_copy(update={"hubert": str(found.hubert_dir)})
