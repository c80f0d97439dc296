"""The one pair that turns a run into a checkpoint and back: `training_state` / `restore`.

Every save (epoch 0, every epoch, an interruption), the resume and the NaN rollback go through these two
functions, so they always agree on what a checkpoint holds:

- the common part (engine): format tag and version, tool version, stage name, position (`RunState`), the
  monitor's state (key `early_stopping`) and best record, the NaN guard, top-k bookkeeping, RNG states of
  every rank, the resolved config, the batch size (`batch_fit`: the `auto` choice and halvings; read by the
  engine before the stage's build on a resume, never by a rollback);
- the stage's part (`Stage.state_dict`): weights, optimizers, scaler, schedules.

A resume restores all of it (after checking that the config still describes the same model and data); a
rollback restores only the stage's weights, optimizers and scaler — the position, the schedules and the
bookkeeping go on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptsovits_train import __version__
from gptsovits_train.config import Config
from gptsovits_train.errors import CheckpointError, GsvError
from gptsovits_train.train.distributed import DistContext, gather_objects
from gptsovits_train.train.monitor import ValidationMonitor
from gptsovits_train.train.nan_guard import NanGuard
from gptsovits_train.train.precision import Precision
from gptsovits_train.train.rng import rng_state, seed_everything, set_rng_state
from gptsovits_train.train.run_checkpoints import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    RunCheckpoints,
)
from gptsovits_train.train.run_state import RunState
from gptsovits_train.train.stage import Stage

LOG = logging.getLogger(__name__)


@dataclass
class Bookkeeping:
    """The engine's own state of a run (everything a checkpoint holds besides the stage's part)."""

    run: RunState
    monitor: ValidationMonitor
    guard: NanGuard
    ckpts: RunCheckpoints


def training_state(
    stage: Stage,
    book: Bookkeeping,
    *,
    epoch: int,
    finished: bool,
    cfg: Config,
    ctx: DistContext,
    precision: Precision,
) -> dict[str, Any]:
    """The checkpoint dict of the run as it stands (collective under DDP: gathers every rank's RNG state).

    `epoch`: the epoch the checkpoint belongs to; `finished`: whether that epoch is complete (else the
    position inside it is kept for a mid-epoch resume).
    """
    position = book.run.state_dict(epoch=epoch, finished=finished)
    position["progress"].update(nan=book.guard.state_dict(), precision=precision, world_size=ctx.world_size)
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "tool_version": __version__,
        "stage": stage.name,
        **stage.state_dict(),
        "batch_fit": stage.batch_fit.state_dict(),
        "early_stopping": book.monitor.state_dict(),
        "rng": {"world_size": ctx.world_size, "ranks": gather_objects(rng_state(), ctx)},
        **position,
        "best": book.monitor.best_record(),
        "top_k": book.ckpts.state_dict(),
        "config": cfg.to_dict(),
    }


def restore(
    state: dict[str, Any],
    stage: Stage,
    *,
    path: Path,
    book: Bookkeeping | None = None,
    cfg: Config | None = None,
    ctx: DistContext | None = None,
) -> None:
    """Put a checkpoint (read from `path`) back into the run.

    Without `book` (NaN rollback): the stage's weights, optimizers and scaler only. With `book`, `cfg` and
    `ctx` (resume): first check that the checkpoint belongs to this stage, model, audio and dataset, then
    restore everything: stage (schedules included), monitor, NaN guard, top-k, position and RNG streams.

    Raises:
        GsvError: a resume with a changed model/audio/dataset, or a checkpoint of another stage.
        CheckpointError: the checkpoint does not fit the stage's models.
    """
    if book is not None:
        assert cfg is not None and ctx is not None
        if state["stage"] != stage.name:
            raise GsvError(
                f"cannot resume: {path} is a {state['stage']} checkpoint, this is the {stage.name} stage"
            )
        check_resume_config(state["config"], cfg, stage.resume_must_match)
    try:
        stage.load_state_dict(state, schedules=book is not None)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if book is None:
        return
    assert cfg is not None and ctx is not None
    book.monitor.load_state_dict(state["early_stopping"], best=state.get("best"))
    book.ckpts.load_state_dict(state["top_k"])
    book.guard.load_state_dict(state["progress"]["nan"])
    book.run.load_state_dict(state)
    rng_states = state["rng"]["ranks"]
    if len(rng_states) == ctx.world_size:
        set_rng_state(rng_states[ctx.rank])
    else:
        LOG.warning(
            "checkpoint holds RNG states of %d process(es), this run has %d: random streams re-seeded",
            len(rng_states),
            ctx.world_size,
        )
        seed_everything(cfg.train.seed + ctx.rank + 1000 * book.run.step)


def check_resume_config(saved: dict[str, Any], cfg: Config, must_match: tuple[str, ...]) -> None:
    """Refuse to resume with other `must_match` sections or another dataset; log every other changed
    training setting."""
    now = cfg.to_dict()
    for section in must_match:
        if saved.get(section) != now[section]:
            diff = sorted(k for k in now[section] if saved.get(section, {}).get(k) != now[section][k])
            raise GsvError(
                f"cannot resume: the {section} section changed since the checkpoint ({', '.join(diff)})"
            )
    if saved["train"].get("dataset") != now["train"]["dataset"]:
        raise GsvError(
            f"cannot resume: train.dataset changed "
            f"({saved['train'].get('dataset')} -> {now['train']['dataset']})"
        )
    for key, value in now["train"].items():
        if saved["train"].get(key) != value:
            LOG.warning("resuming with train.%s changed: %r -> %r", key, saved["train"].get(key), value)
