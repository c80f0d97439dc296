"""The training engine: `run_stage(stage, cfg, run_dir)` trains any `stage.Stage`; `fit`: the SoVITS stage.

`_train` reads top to bottom:

1. setup: run folder checks, processes and device (DDP under torchrun, one process otherwise), precision;
2. the stage builds its data, models and optimizers; a fresh run loads its pretrained/initial weights;
3. resume from `last.pt` (`training_state.restore`: everything) or seed a fresh run;
4. epochs of steps: the stage's step (an out-of-memory error halves its pieces, `batch_fit.py`; logged as
   `batch_halved`), the NaN guard (skip; after `nan_patience` bad steps a rollback to
   `last.pt` with a lower lr), the run log, the stop signals;
5. at the end of an epoch: schedules, validation every `val_every` epochs, the monitor's verdict (the one
   owner of "best": best checkpoint, early stopping, plateau schedule), the checkpoint, the epoch line;
6. the end (early stop, max epochs, max steps, Ctrl-C/SIGTERM): reload `best.pt`, validate again — it must
   give exactly the recorded best, else the run fails after writing everything — and write `summary.json`
   and `curves.png` (`finish_run`).

Only rank 0 writes files; every rank keeps the same bookkeeping (validation is reduced across ranks).
`docs/engine.md` explains how a stage plugs in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gptsovits_train import __version__
from gptsovits_train.config import Config, TrainConfig
from gptsovits_train.errors import GsvError
from gptsovits_train.fileio import atomic_write_text
from gptsovits_train.layout import RunLayout
from gptsovits_train.report.listen import ListenReport
from gptsovits_train.train.cpu_memory import cpu_threads, keep_freed_memory
from gptsovits_train.train.distributed import (
    DistContext,
    any_true,
    barrier,
    setup_distributed,
    teardown_distributed,
)
from gptsovits_train.train.metrics import plot_curves, read_metrics, write_summary
from gptsovits_train.train.monitor import ValidationMonitor, Verdict
from gptsovits_train.train.nan_guard import NanGuard
from gptsovits_train.train.precision import Precision, resolve_precision
from gptsovits_train.train.rng import seed_everything
from gptsovits_train.train.run_checkpoints import RunCheckpoints, first_nonfinite, load_run_checkpoint
from gptsovits_train.train.run_log import RunLog
from gptsovits_train.train.run_state import RunState
from gptsovits_train.train.schedulers import current_lrs
from gptsovits_train.train.signals import StopSignals
from gptsovits_train.train.sovits_stage import SovitsStage, ValidateFn
from gptsovits_train.train.stage import Stage, ValResult
from gptsovits_train.train.training_state import Bookkeeping, restore, training_state

LOG = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ API
@dataclass
class StepInfo:
    """Passed to the `on_step` callback after every optimizer step."""

    epoch: int
    step: int
    batch_in_epoch: int
    values: dict[str, float]
    models: dict[str, nn.Module]  # the stage's bare models by name
    data_wait_s: float  # time this step waited for its batch
    step_time_s: float  # time of the step itself (forward, backward, updates)
    batch_size: int

    @property
    def generator(self) -> nn.Module:
        return self.models["generator"]

    @property
    def discriminator(self) -> nn.Module:
        return self.models["discriminator"]


@dataclass
class FitResult:
    """How a run ended (the same on every DDP rank)."""

    run_dir: Path
    stop_reason: str  # early_stopping | max_epochs | max_steps | interrupted
    stop_message: str
    best_epoch: int | None
    best_value: float | None  # the monitored validation metric at the best epoch
    val_after_reload: float | None  # the same metric, re-measured after reloading best.pt at the end
    epochs_completed: int
    steps: int
    summary: dict[str, Any]
    signal: str | None = None  # "SIGINT"/"SIGTERM" when a signal stopped the run


class ReloadMismatchError(GsvError):
    """Validating the reloaded best weights did not give the recorded best (raised after all is written)."""


def fit(
    cfg: Config,
    run_dir: Path | str,
    *,
    resume: bool = False,
    progress: bool = True,
    validate_fn: ValidateFn | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
) -> FitResult:
    """Fine-tune the SoVITS generator/discriminator described by `cfg` into `run_dir`.

    Args:
        cfg: the resolved configuration (`train.dataset` must name a prepared dataset).
        run_dir: the run folder (created; must not already hold a run unless `resume`).
        resume: continue the run in `run_dir` from its `last.pt`.
        progress: show a progress bar per epoch (rank 0 only).
        validate_fn: replaces the real validation (tests drive the loop with scripted values).
        on_step: called after every optimizer step.

    Raises:
        GsvError: bad dataset, run folder or config; training diverged beyond the NaN guard;
            `ReloadMismatchError` when the reloaded best weights do not validate to the recorded best.
    """
    stage = SovitsStage(cfg, validate_fn=validate_fn)
    return run_stage(stage, cfg, run_dir, resume=resume, progress=progress, on_step=on_step)


def run_stage(
    stage: Stage,
    cfg: Config,
    run_dir: Path | str,
    *,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[StepInfo], None] | None = None,
) -> FitResult:
    """Train `stage` into `run_dir` (arguments as `fit`); sets up and tears down the DDP process group."""
    ctx = setup_distributed(cfg.train.device)
    try:
        return _train(stage, cfg, RunLayout(Path(run_dir)), ctx, resume, progress, on_step)
    finally:
        teardown_distributed(ctx)


# ------------------------------------------------------------------------------------------ the loop
def _train(
    stage: Stage,
    cfg: Config,
    layout: RunLayout,
    ctx: DistContext,
    resume: bool,
    progress: bool,
    on_step: Callable[[StepInfo], None] | None,
) -> FitResult:
    t = cfg.train
    run = RunState()  # the position; its clock starts now

    # ------------------------------------------------------------------ 1. run folder, device, precision
    check_run_folder(layout, t, resume=resume)
    precision = setup_device(t, ctx)
    LOG.info(
        "device %s, precision %s, %d process(es); run folder %s",
        ctx.device,
        precision,
        ctx.world_size,
        layout.root,
    )

    # ------------------------------------------------------------------ 2. the stage: data, models, weights
    resume_state = load_run_checkpoint(layout.last) if resume else None
    fit = stage.batch_fit  # a resume keeps the run's batch size (`auto` choice, halvings)
    fit.load_state_dict(resume_state.get("batch_fit") if resume_state is not None else None)
    data = stage.build(ctx, precision)
    batches_per_epoch = data.batches.num_batches
    init_reports = {name: "resumed" for name in stage.models()} if resume else stage.init_weights()
    book = Bookkeeping(
        run=run,
        monitor=ValidationMonitor.from_config(t.early_stopping),
        guard=NanGuard(t.nan_patience, t.nan_max_rollbacks),
        ckpts=RunCheckpoints(layout, weight_keys=stage.weight_keys, top_k=t.keep_top_k, write=ctx.is_main),
    )
    monitor, guard, ckpts = book.monitor, book.guard, book.ckpts

    def save(epoch: int, *, finished: bool, verdict: Verdict | None) -> None:
        state = training_state(
            stage, book, epoch=epoch, finished=finished, cfg=cfg, ctx=ctx, precision=precision
        )
        ckpts.save(state, verdict, epoch=epoch, step=run.step)
        barrier(ctx)

    # ------------------------------------------------------------------ 3. fresh start or resume
    if resume_state is not None:
        restore(resume_state, stage, path=layout.last, book=book, cfg=cfg, ctx=ctx)
        del resume_state
        position = "" if run.batches_done == 0 else f" (batch {run.batches_done} of {batches_per_epoch})"
        LOG.info("resumed from %s: epoch %d%s, step %d", layout.last, run.epoch, position, run.step)
    else:
        seed_everything(t.seed + ctx.rank)
    if ctx.is_main:  # data, models and any resume state are usable: the run folder gets this config
        layout.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(layout.config, cfg.to_yaml())
    log = RunLog(
        layout,
        enabled=ctx.is_main,
        tensorboard=t.tensorboard,
        progress=progress,
        epochs=t.epochs,
        log_every=t.log_every,
        headline=stage.headline,
        elapsed_before=run.elapsed_before,
        resume_step=run.step if resume else None,
        media_samples=t.val_audio_samples,
        report=ListenReport(
            layout,
            stage=stage.name,
            clips=data.listen,
            sampling_rate=cfg.audio.sampling_rate,
            audio_format=t.listen_format,
            run_info={"dataset": data.summary, "device": describe_device(ctx.device), "precision": precision},
        )
        if ctx.is_main
        else None,
    )
    fit.on_halve = partial(log.event, "batch_halved")  # metrics.jsonl, also when the run then fails
    first_epoch = run.epoch
    if resume:
        log.rewind(run.step, run.epoch - 1)
    else:
        save(0, finished=True, verdict=None)  # epoch 0: the first resume and NaN-rollback point
        log.event("start", epoch=0, step=0, init=init_reports, precision=precision, device=str(ctx.device))
    log.start_report()

    stop_reason, stop_message = "max_epochs", f"reached train.epochs = {t.epochs}"
    if resume and monitor.has_stopped:  # stopped early before the resume: go straight to the end
        stop_reason, stop_message = "early_stopping", monitor.stop_reason or "early stopping had triggered"
    if resume and t.max_steps is not None and run.step >= t.max_steps:
        stop_reason, stop_message = "max_steps", f"reached train.max_steps = {t.max_steps}"
    signals = StopSignals().install()
    try:
        # -------------------------------------------------------------- 4. epochs
        while stop_reason == "max_epochs" and run.epoch <= t.epochs:
            epoch = run.epoch
            data.batches.set_epoch(epoch, start_batch=run.batches_done)
            stage.train_mode()
            log.start_epoch(epoch, batches=batches_per_epoch, done=run.batches_done)
            interrupted = hit_max_steps = False
            t_fetch = time.perf_counter()
            for batch in data.loader:
                t_got = time.perf_counter()
                log.data_wait += t_got - t_fetch
                fit.position = (epoch, run.step + 1)
                out = stage.train_step(batch)
                run.step += 1
                run.batches_done += 1
                nan_verdict = guard.record(out.ok)
                if nan_verdict == "ok":
                    run.add_step(out.values)
                else:
                    log.event("nan_skip", epoch=epoch, step=run.step, **out.values)
                if nan_verdict == "rollback":
                    rollback(stage, layout, t, log, epoch=epoch, step=run.step)
                elif nan_verdict == "give_up":
                    raise GsvError(
                        f"training diverged: non-finite losses after {guard.rollbacks} rollbacks with lower "
                        "learning rates; lower train.learning_rate, use precision fp32, or check the dataset"
                    )
                log.step(epoch, run.step, out.values, first_lrs(stage))
                if on_step is not None:
                    on_step(
                        StepInfo(
                            epoch,
                            run.step,
                            run.batches_done,
                            out.values,
                            stage.models(),
                            data_wait_s=t_got - t_fetch,
                            step_time_s=time.perf_counter() - t_got,
                            batch_size=out.batch_size,
                        )
                    )
                if any_true(signals.requested, ctx):
                    interrupted = True
                    break
                if t.max_steps is not None and run.step >= t.max_steps:
                    hit_max_steps = True
                    break
                t_fetch = time.perf_counter()
            epoch_time = log.end_epoch()

            if interrupted:  # last.pt keeps the position inside the epoch; no validation
                save(epoch, finished=False, verdict=None)
                stop_reason = "interrupted"
                stop_message = (
                    f"{signals.name} during epoch {epoch} (step {run.step}); last.pt holds the position"
                )
                break

            # ---------------------------------------------------------- 5. end of the epoch
            finished = not hit_max_steps or run.batches_done >= batches_per_epoch
            train_means = run.train_means()
            if finished:
                for schedule in stage.schedules:
                    schedule.step_epoch()
            verdict: Verdict | None = None
            val: ValResult | None = None
            if (epoch - 1) % t.val_every == 0 or epoch == t.epochs or hit_max_steps:
                val = stage.validate(epoch, final=False)
                value = val.metrics[monitor.monitor]
                bad = first_nonfinite({name: m.state_dict() for name, m in stage.models().items()})
                if bad is not None:  # weights that cannot be saved can never be the best
                    LOG.error("epoch %d cannot become the best: weights are not finite (%s)", epoch, bad)
                    value = float("nan")
                verdict = monitor.observe(value, epoch, run.step)
                for schedule in stage.schedules:
                    schedule.step_validation(verdict)
            run.last_metrics = {**train_means, **(val.metrics if val else {})}
            run.end_epoch(finished=finished)
            save(epoch, finished=finished, verdict=verdict)
            log.epoch(
                epoch,
                run.step,
                train_means=train_means,
                lrs=first_lrs(stage),
                epoch_time=epoch_time,
                skipped_steps=guard.skipped_steps,
                finished=finished,
            )
            if val is not None and verdict is not None:
                first_media = epoch == 1 or (resume and epoch == first_epoch)
                log.validation(
                    val, verdict, step=run.step, patience=monitor.patience, target_media=first_media
                )
            log.epoch_line(
                epoch,
                train_means=train_means,
                verdict=verdict,
                monitor=monitor.monitor,
                patience=monitor.patience,
                lr=next(iter(first_lrs(stage).values())),
                epoch_time=epoch_time,
            )
            if verdict is not None and verdict.should_stop:
                stop_reason, stop_message = "early_stopping", verdict.reason
            elif hit_max_steps:
                stop_reason, stop_message = "max_steps", f"reached train.max_steps = {t.max_steps}"

        # -------------------------------------------------------------- 6. the end: reload best, summary
        signals.ending = True
        data.close()  # the training workers end now, not at interpreter exit
        LOG.info("run stopped: %s (%s)", stop_reason, stop_message)
        summary = finish_run(
            stage,
            book,
            log,
            layout,
            cfg,
            ctx,
            stop_reason=stop_reason,
            stop_message=stop_message,
            run_info={
                "device": describe_device(ctx.device),
                "precision": precision,
                "world_size": ctx.world_size,
                "dataset": data.summary,
                "init": init_reports,
            },
        )
    finally:
        signals.restore()
        data.close()
        log.close()
    barrier(ctx)
    result = FitResult(
        run_dir=layout.root,
        stop_reason=stop_reason,
        stop_message=stop_message,
        best_epoch=summary["best_epoch"],
        best_value=summary["best_value"],
        val_after_reload=summary["val_after_reload_value"],
        epochs_completed=run.epochs_completed,
        steps=run.step,
        summary=summary,
        signal=signals.name if stop_reason == "interrupted" else None,
    )
    if summary["best_epoch"] is not None and not summary["reload_matches_best"]:
        raise ReloadMismatchError(
            f"reloading best.pt (epoch {summary['best_epoch']}) gave {monitor.monitor} "
            f"{summary['val_after_reload_value']!r}, not the recorded best {summary['best_value']!r}; the "
            f"weights or the validation are not deterministic (summary and checkpoints in {layout.root})"
        )
    return result


# ------------------------------------------------------------------------------------- the loop's parts
def check_run_folder(layout: RunLayout, t: TrainConfig, *, resume: bool) -> None:
    """Refuse a missing dataset setting, a resume without `last.pt`, and a fresh run over an old one."""
    if t.dataset is None:
        raise GsvError("train.dataset is not set: point it at a folder made by `gsv-train prepare`")
    if resume and not layout.last.is_file():
        raise GsvError(f"nothing to resume: {layout.last} does not exist")
    if not resume and layout.last.exists():
        raise GsvError(
            f"{layout.root} already holds a run ({layout.last}); pass --resume to continue it, "
            "or choose another --run-dir"
        )


def setup_device(t: TrainConfig, ctx: DistContext) -> Precision:
    """Precision for this device; CPU thread budget and allocator; TF32 on NVIDIA GPUs when allowed."""
    precision: Precision = resolve_precision(t.precision, ctx.device)
    if ctx.device.type == "cpu":
        keep_freed_memory()  # glibc: no page-fault storm per step (see cpu_memory.py)
        threads = cpu_threads(t.cpu_threads, t.num_workers, ctx.world_size)
        if threads is not None:
            torch.set_num_threads(threads)
        LOG.info("CPU: %d torch threads per process", torch.get_num_threads())
    if ctx.device.type == "cuda" and t.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return precision


def describe_device(device: torch.device) -> str:
    return str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})"


def first_lrs(stage: Stage) -> dict[str, float]:
    """`{"lr/<optimizer>": lr of its first param group}`."""
    return {f"lr/{name}": float(opt.param_groups[0]["lr"]) for name, opt in stage.optimizers.items()}


def rollback(stage: Stage, layout: RunLayout, t: TrainConfig, log: RunLog, *, epoch: int, step: int) -> None:
    """NaN guard: reload the last good checkpoint's weights/optimizers and lower every learning rate."""
    lrs = {name: current_lrs(opt) for name, opt in stage.optimizers.items()}
    ck = load_run_checkpoint(layout.last)
    restore(ck, stage, path=layout.last)
    for name, opt in stage.optimizers.items():
        for group, lr in zip(opt.param_groups, lrs[name], strict=True):
            group["lr"] = lr * t.nan_lr_factor
    first = next(iter(stage.optimizers.values())).param_groups[0]["lr"]
    LOG.warning(
        "%d non-finite steps in a row: rolled back to %s (epoch %d, step %d) with lr x%g -> %.3g",
        t.nan_patience,
        layout.last.name,
        int(ck["epoch"]),
        int(ck["step"]),
        t.nan_lr_factor,
        first,
    )
    name, lr = next(iter(first_lrs(stage).items()))
    log.event("nan_rollback", epoch=epoch, step=step, restored_step=int(ck["step"]), **{name: lr})


def finish_run(
    stage: Stage,
    book: Bookkeeping,
    log: RunLog,
    layout: RunLayout,
    cfg: Config,
    ctx: DistContext,
    *,
    stop_reason: str,
    stop_message: str,
    run_info: dict[str, Any],
) -> dict[str, Any]:
    """The end of every run: reload `best.pt`, validate it again, write `summary.json` and `curves.png`.

    Returns the summary. The reloaded validation must equal the recorded best (`reload_matches_best`); the
    caller fails the run when it does not, after everything here is written.
    """
    monitor, run = book.monitor, book.run
    best = monitor.best_record()
    after: ValResult | None = None
    if best is not None and layout.best.is_file():
        best_state = load_run_checkpoint(layout.best)
        stage.load_weights(best_state)
        del best_state
        after = stage.validate(int(best["epoch"]), final=True)
        log.event("final", epoch=int(best["epoch"]), step=run.step, **after.metrics, best=best["value"])
        value = after.metrics[monitor.monitor]
        if value == best["value"]:
            LOG.info(
                "reloaded best.pt (epoch %d): %s %.6f, exactly the recorded best",
                best["epoch"],
                monitor.monitor,
                value,
            )
        else:
            LOG.error(
                "reloaded best.pt (epoch %d): %s %.6f differs from the recorded best %.6f by %.3g",
                best["epoch"],
                monitor.monitor,
                value,
                best["value"],
                value - best["value"],
            )
    else:
        LOG.warning("no validation has finished: there are no best weights to reload")
    summary: dict[str, Any] = {
        "run_dir": str(layout.root),
        "stage": stage.name,
        "stop_reason": stop_reason,
        "stop_message": stop_message,
        "monitor": monitor.monitor,
        "best_epoch": best["epoch"] if best else None,
        "best_step": best["step"] if best else None,
        "best_value": best["value"] if best else None,
        "val_after_reload": after.metrics if after else None,
        "val_after_reload_value": after.metrics[monitor.monitor] if after else None,
        "reload_matches_best": bool(after and best and after.metrics[monitor.monitor] == best["value"]),
        "epochs_completed": run.epochs_completed,
        "max_epochs": cfg.train.epochs,
        "steps": run.step,
        "wall_time_s": round(run.elapsed, 3),
        "device": run_info["device"],
        "precision": run_info["precision"],
        "world_size": run_info["world_size"],
        "resumes": run.resumes,
        "dataset": run_info["dataset"],
        "nan_guard": book.guard.state_dict(),
        "batch_size": stage.batch_fit.state_dict(),
        "lr_final": {name: current_lrs(opt)[0] for name, opt in stage.optimizers.items()},
        "checkpoints": {
            "best": str(layout.best) if best else None,
            "last": str(layout.last),
            "top_k": {str(p): s for p, s in book.ckpts.best_k_models.items()},
        },
        "init": run_info["init"],
        "config_digest": cfg.digest(),
        "tool_version": __version__,
    }
    if ctx.is_main:
        write_summary(layout.summary, summary)
        plot_curves(read_metrics(layout.metrics), layout.curves, best_epoch=summary["best_epoch"])
    log.finish_report()
    return summary
