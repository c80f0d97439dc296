"""What a run tells while it trains: `metrics.jsonl`, TensorBoard, the progress bar and the epoch line.

`RunLog` is the one place the engine reports to. Only rank 0 writes (files, bar, lines); the other ranks get
an `enabled=False` log whose methods only keep the bookkeeping. The events of `metrics.jsonl` are listed in
`metrics.py`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from tqdm import tqdm

from gptsovits_train.layout import RunLayout
from gptsovits_train.train.metrics import MetricsLog
from gptsovits_train.train.monitor import Verdict
from gptsovits_train.train.stage import ValResult
from gptsovits_train.train.tensorboard import TensorBoardLogger

LOG = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """`75` -> "1m15s", `4000` -> "1h06m"."""
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class RunLog:
    """metrics.jsonl + TensorBoard + progress bar + one line per epoch.

    Args:
        layout: the run folder.
        enabled: whether this process writes (rank 0).
        tensorboard: write TensorBoard events (`train.tensorboard`).
        progress: show a progress bar per epoch.
        epochs: the epoch limit (shown as `epoch e/N`).
        log_every: step events every N optimizer steps.
        headline: `(name, format)` of the losses the bar and the epoch line show, e.g. `("mel", ".4f")`
            shows `loss/mel` on the bar and `train/mel` in the epoch line.
        elapsed_before: seconds of earlier sessions (event times continue across resumes).
        resume_step: on resume, the checkpoint's step: later events of the interrupted session are dropped.
    """

    def __init__(
        self,
        layout: RunLayout,
        *,
        enabled: bool,
        tensorboard: bool,
        progress: bool,
        epochs: int,
        log_every: int,
        headline: tuple[tuple[str, str], ...],
        elapsed_before: float = 0.0,
        resume_step: int | None = None,
    ) -> None:
        self.enabled = enabled
        self.progress = progress and enabled
        self.epochs = epochs
        self.log_every = log_every
        self.headline = headline
        self.metrics = MetricsLog(layout.metrics, enabled=enabled, time_offset=elapsed_before)
        self.tb = TensorBoardLogger(
            layout.tb_dir,
            enabled=enabled and tensorboard,
            purge_step=None if resume_step is None else resume_step + 1,
        )
        self._bar: Any = None
        self._epoch_times: list[float] = []
        self._epoch_start = 0.0
        self.data_wait = 0.0

    def event(self, name: str, **fields: Any) -> None:
        """One metrics.jsonl event."""
        self.metrics.log(name, **fields)

    def rewind(self, step: int, epoch: int) -> None:
        """Resume: drop the events the interrupted session logged after its checkpoint."""
        if self.enabled:
            self.metrics.rewind(step, epoch)

    # ------------------------------------------------------------------------------------------- epochs
    def start_epoch(self, epoch: int, *, batches: int, done: int) -> None:
        self._epoch_start = time.monotonic()
        self.data_wait = 0.0
        self._bar = tqdm(
            total=batches,
            initial=done,
            desc=f"epoch {epoch}/{self.epochs}",
            unit="step",
            leave=False,
            dynamic_ncols=True,
            disable=not self.progress,
        )

    def step(self, epoch: int, step: int, values: dict[str, float], lrs: dict[str, float]) -> None:
        """After every optimizer step: the bar; every `log_every` steps a step event."""
        if step % self.log_every == 0:
            record = {**values, **lrs}
            self.metrics.log("step", epoch=epoch, step=step, **record)
            self.tb.scalars(record, step)
        if self._bar is not None:
            self._bar.update(1)
            shown = {k: f"{values[f'loss/{k}']:{fmt}}" for k, fmt in self.headline if f"loss/{k}" in values}
            self._bar.set_postfix(shown, refresh=False)

    def end_epoch(self) -> float:
        """Close the bar; return the epoch's training time in seconds."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        return time.monotonic() - self._epoch_start

    def epoch(
        self,
        epoch: int,
        step: int,
        *,
        train_means: dict[str, float],
        lrs: dict[str, float],
        epoch_time: float,
        skipped_steps: int,
        finished: bool,
    ) -> None:
        record = {
            **train_means,
            **lrs,
            "time_s": epoch_time,
            "data_wait_frac": self.data_wait / epoch_time if epoch_time > 0 else 0.0,
            "skipped_steps": skipped_steps,
            "partial": not finished,
        }
        self.metrics.log("epoch", epoch=epoch, step=step, **record)
        self.tb.scalars({k: v for k, v in record.items() if isinstance(v, float)}, step)

    def validation(
        self, val: ValResult, verdict: Verdict, *, step: int, patience: int, target_media: bool
    ) -> None:
        """A validation event, its scalars and media (`target_media`: also the targets, once per session)."""
        self.metrics.log(
            "val",
            epoch=verdict.epoch,
            step=step,
            **val.metrics,
            improved=verdict.improved,
            best=verdict.best_value,
            best_epoch=verdict.best_epoch,
            patience_left=verdict.patience_left,
            clips=val.n_clips,
        )
        self.tb.scalars(val.metrics, step)
        for i, sample in enumerate(val.samples):
            tag = f"{i}_{sample.clip_id}"
            self.tb.audio(f"val_audio/{tag}", sample.audio, step, val.sample_rate)
            self.tb.mel_image(f"val_mel/{tag}", sample.mel, step)
            if target_media:
                self.tb.mel_image(f"val_mel_target/{tag}", sample.target_mel, step)
        LOG.debug("early stopping: %s", verdict.reason)

    def epoch_line(
        self,
        epoch: int,
        *,
        train_means: dict[str, float],
        verdict: Verdict | None,
        monitor: str,
        patience: int,
        lr: float,
        epoch_time: float,
    ) -> None:
        """The one-line summary of an epoch (INFO), with the time left at the current pace."""
        means = " ".join(f"{k} {train_means.get(f'train/{k}', math.nan):{fmt}}" for k, fmt in self.headline)
        line = f"epoch {epoch}/{self.epochs} | train {means}"
        if verdict is not None:
            if verdict.improved:
                status = "new best"
            elif verdict.best_value is None:
                status = "no best yet"
            else:
                status = f"best {verdict.best_value:.4f} @{verdict.best_epoch}"
            line += (
                f" | {monitor} {verdict.value:.4f} ({status}) | patience {verdict.patience_left}/{patience}"
            )
        self._epoch_times.append(epoch_time)
        remaining = (self.epochs - epoch) * (sum(self._epoch_times) / len(self._epoch_times))
        line += f" | lr {lr:.2e} | {epoch_time:.1f}s (<= {format_duration(remaining)} left)"
        LOG.info("%s", line)
        self.tb.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self.tb.close()
