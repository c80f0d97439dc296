"""`gsv-train fit` over several stages: each stage the config names (`stages: [sovits, gpt]`) trains into
its own subfolder of the run folder (`<run>/sovits/`, `<run>/gpt/`) with its own validation, early
stopping, best weights and summary, one after the other on the same dataset and split.

Resume (`--resume`): a stage whose `summary.json` exists is finished and skipped, a stage with a
`checkpoints/last.pt` continues from it, any other stage starts fresh. An interrupted stage stops the
whole run (the next `--resume` continues it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptsovits_train.config import Config, StageName
from gptsovits_train.errors import GsvError
from gptsovits_train.layout import RunLayout
from gptsovits_train.train.loop import FitResult, fit, run_stage

LOG = logging.getLogger(__name__)

STAGE_NAMES: tuple[StageName, ...] = ("sovits", "gpt")


@dataclass
class StageRun:
    """One stage of a multi-stage fit: `result` None when it was skipped as already finished."""

    name: str
    run_dir: Path
    result: FitResult | None
    summary: dict[str, Any] | None


def stage_dir(run_dir: Path | str, name: str) -> Path:
    """Where a stage of a run lives: `<run>/<stage>/`."""
    return Path(run_dir) / name


def fit_stages(
    cfg: Config,
    run_dir: Path | str,
    *,
    only: StageName | None = None,
    resume: bool = False,
    progress: bool = True,
) -> list[StageRun]:
    """Train `cfg.stages` (or only `only`) into `run_dir/<stage>/`; returns one `StageRun` per stage.

    Raises `GsvError` from a stage (the stages before it keep their finished results).
    """
    names: list[StageName] = [only] if only is not None else list(cfg.stages)
    if "gpt" in names and names[0] != "gpt" and cfg.train.dataset is not None:
        # fail before hours of SoVITS training when the dataset has nothing for the GPT stage
        from gptsovits_train.train.gpt_data import load_gpt_splits

        load_gpt_splits(cfg.train.dataset, max_sec=cfg.gpt.max_sec)
    runs: list[StageRun] = []
    for name in names:
        folder = stage_dir(run_dir, name)
        layout = RunLayout(folder)
        stage_resume = False
        if resume and layout.summary.is_file():
            LOG.info("stage %s: already finished (%s), skipped", name, layout.summary)
            runs.append(StageRun(name, folder, None, json.loads(layout.summary.read_text(encoding="utf-8"))))
            continue
        if resume and layout.last.is_file():
            stage_resume = True
        elif resume:
            LOG.info("stage %s: nothing to resume in %s, starting it", name, folder)
        LOG.info("stage %s: training into %s", name, folder)
        result = _fit_one(name, cfg, folder, resume=stage_resume, progress=progress)
        runs.append(StageRun(name, folder, result, result.summary))
        if result.stop_reason == "interrupted":
            break
    return runs


def _fit_one(name: StageName, cfg: Config, folder: Path, *, resume: bool, progress: bool) -> FitResult:
    if name == "sovits":
        if cfg.train.early_stopping.monitor == "val/loss":
            raise GsvError(
                "train.early_stopping.monitor val/loss is the GPT stage's; use val/mel or val/total"
            )
        return fit(cfg, folder, resume=resume, progress=progress)
    if name == "gpt":
        from gptsovits_train.train.gpt_stage import GptStage, engine_config

        return run_stage(GptStage(cfg, folder), engine_config(cfg), folder, resume=resume, progress=progress)
    raise GsvError(f"unknown stage {name!r} (known: {', '.join(STAGE_NAMES)})")


def trained_stages(run_dir: Path | str) -> list[StageName]:
    """The stages of a multi-stage run folder that have a `checkpoints/best.pt`."""
    return [s for s in STAGE_NAMES if RunLayout(stage_dir(run_dir, s)).best.is_file()]


def export_stages(
    run_dir: Path | str,
    *,
    out: Path | None = None,
    name: str | None = None,
    fmt: str = "pth",
    force: bool = False,
) -> list[tuple[StageName, Any]]:
    """`export-best` of a multi-stage run: every trained stage's best weights in its official format.

    SoVITS: `export.export_best` (`<name>_e<E>_s<S>.pth`); GPT: `<name>-e<E>.ckpt`. `name` defaults to
    the run folder's name, `out` to each stage's `exports/` folder. Raises `GsvError` when no stage has
    best weights.
    """
    from typing import cast

    from gptsovits_train.checkpoints.export import ExportFormat, export_best
    from gptsovits_train.train.gpt_stage import export_gpt_checkpoint

    run_dir = Path(run_dir)
    stages = trained_stages(run_dir)
    if not stages:
        raise GsvError(
            f"{run_dir}: no stage has best weights yet "
            f"(looked for {', '.join(STAGE_NAMES)}/checkpoints/best.pt)"
        )
    run_name = name or run_dir.resolve().name
    done: list[tuple[StageName, Any]] = []
    for s in stages:
        folder = stage_dir(run_dir, s)
        if s == "sovits":
            done.append(
                (s, export_best(folder, out, name=run_name, fmt=cast(ExportFormat, fmt), force=force))
            )
        else:
            done.append((s, export_gpt_checkpoint(RunLayout(folder).best, out, name=run_name, force=force)))
    return done
