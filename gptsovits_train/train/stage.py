"""What a trainable stage gives the engine (`loop.run_stage`): its models, its step, its validation.

The engine owns everything else — run folder, device and precision, resume, NaN rollback, the monitor of
"best" and early stopping, checkpoints, signals, the run log, and the end of the run (reload best, validate
again, summary). `docs/engine.md` describes how a stage plugs in; `sovits_stage.SovitsStage` is the example.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from gptsovits_train.report.listen_files import ListenClip
from gptsovits_train.train.batch_fit import BatchFit
from gptsovits_train.train.distributed import DistContext
from gptsovits_train.train.monitor import Verdict
from gptsovits_train.train.precision import Precision


@dataclass
class ValSample:
    """What TensorBoard and the listening report (`report/`) show of one validation clip."""

    clip_id: str
    audio: torch.Tensor  # (L,) generated audio, float32 CPU
    mel: torch.Tensor  # (n_mels, F) its log-mel
    target_mel: torch.Tensor  # (n_mels, F) the clip's log-mel
    index: int = 0  # the clip's position in the whole validation list


@dataclass
class ValResult:
    """One validation: mean metrics over all validation items of all ranks (the same on every rank)."""

    metrics: dict[str, float]
    n_clips: int
    samples: list[ValSample] = field(default_factory=list)
    sample_rate: int = 0  # of the samples' audio


@dataclass
class StepOutput:
    """One optimizer step: whether its updates were applied (finite), and the numbers to log."""

    ok: bool
    values: dict[str, float]  # "loss/<name>" entries are averaged into the epoch's "train/<name>"
    batch_size: int


class EpochBatches(Protocol):
    """The batch order of the training data, resumable inside an epoch."""

    @property
    def num_batches(self) -> int: ...

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None: ...


class LrSchedule(Protocol):
    """A learning-rate schedule the engine steps: once per finished epoch and once per validation."""

    def step_epoch(self) -> None: ...

    def step_validation(self, verdict: Verdict) -> bool: ...


@dataclass
class StageData:
    """The training data of a stage.

    `loader` yields the batches of the epoch chosen by `batches.set_epoch` (from its `start_batch` on);
    `summary` goes into `summary.json` as its `dataset` entry. `listen`: the validation clips of the
    listening report (`report.html`), in validation-list order — the stage's `validate` must return their
    generated audio as its first samples; empty for a stage without audio.
    """

    loader: Iterable[Any]
    batches: EpochBatches
    summary: dict[str, Any]
    listen: list[ListenClip] = field(default_factory=list)

    def close(self) -> None:
        """Drop the loader now, so its worker processes end inside the run, not at interpreter exit."""
        self.loader = ()


class Stage(Protocol):
    """A trainable model of the pipeline (SoVITS today; the GPT stage next).

    Attributes:
        name: stored in every checkpoint; a resume refuses a checkpoint of another stage.
        weight_keys: the entries of `state_dict()` holding model weights: never saved when not finite, and
            what `best.pt` is reloaded from at the end.
        resume_must_match: config sections that must not change when a run is resumed.
        headline: `(loss name, format)` shown by the progress bar and the epoch line, e.g. `("mel", ".4f")`.
        optimizers: `{name: optimizer}`; the lr of each one's first group is logged as `lr/<name>`.
        schedules: stepped by the engine after every finished epoch and every validation verdict.
        batch_fit: the run's batch size and items per pass (`batch_fit.BatchFit`, made from the config
            before `build`, which resolves `batch_size: auto`); saved in every checkpoint by the engine.
    """

    name: str
    weight_keys: tuple[str, ...]
    resume_must_match: tuple[str, ...]
    headline: tuple[tuple[str, str], ...]
    optimizers: dict[str, torch.optim.Optimizer]
    schedules: list[LrSchedule]
    batch_fit: BatchFit

    def build(self, ctx: DistContext, precision: Precision) -> StageData:
        """Read the data, build the models (on `ctx.device`, DDP-wrapped when distributed), optimizers,
        schedules and grad scaler. Raises `GsvError` for a dataset or config it cannot train on."""
        ...

    def init_weights(self) -> dict[str, str]:
        """Fresh runs only: load the pretrained/initial weights; return one report line per model."""
        ...

    def models(self) -> dict[str, nn.Module]:
        """The bare models by name (what `on_step` callbacks see)."""
        ...

    def train_mode(self) -> None:
        """Put the models in training mode (validation may have left them in eval mode)."""
        ...

    def train_step(self, batch: Any) -> StepOutput:
        """One optimizer step on a CPU batch from the loader; a non-finite step applies no update."""
        ...

    def validate(self, epoch: int, *, final: bool) -> ValResult:
        """Deterministic validation of the current weights (`final`: after `best.pt` was reloaded)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds beyond the common part: weights (CPU, fp32), optimizers, scaler,
        schedules — plain types only (`torch.load(weights_only=True)`)."""
        ...

    def load_state_dict(self, state: dict[str, Any], *, schedules: bool = True) -> None:
        """Restore `state_dict()` output; `schedules=False` (NaN rollback) keeps the current schedules.
        Raises `CheckpointError` when the checkpoint does not fit these models."""
        ...

    def load_weights(self, state: dict[str, Any]) -> None:
        """Load only the model weights of a checkpoint (`best.pt` at the end of the run)."""
        ...

    def export(self, checkpoint: Any, out: Any, **options: Any) -> Any:
        """Write the run's result in the format its users load (SoVITS: `checkpoints.export.export_best`)."""
        ...
