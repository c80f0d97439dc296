"""`fit(cfg, run_dir)`: fine-tune SoVITS with validation, early stopping and best-weight reload.

Read it top to bottom:

1. processes and device (DDP under torchrun, one process otherwise), precision, run folder;
2. data: the prepared dataset's cached features, length-bucketed batches (`dataset.py`);
3. models: official pretrained s2G/s2D (strict key report) or random init; frozen `ssl_proj`/quantizer;
   AdamW with the official groups; grad scaler; lr schedule; early stopping; checkpoints;
4. resume from `last.pt` (everything: optimizers, scaler, schedules, early stopping, RNG, position);
5. epochs: official D+G steps (`step.py`) with the NaN guard, then every `val_every` epochs a deterministic
   validation (`validation.py`) driving the plateau schedule, early stopping and the best checkpoint;
6. the end (early stop, max epochs, max steps, Ctrl-C/SIGTERM): reload `best.pt`, validate again — it must
   give exactly the recorded best — and write `summary.json` and `curves.png`.

Only rank 0 writes files; every rank keeps the same bookkeeping (validation is reduced across ranks).
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from gptsovits_train import __version__
from gptsovits_train.config import Config
from gptsovits_train.errors import CheckpointError, GsvError
from gptsovits_train.fileio import atomic_write_text
from gptsovits_train.layout import RunLayout
from gptsovits_train.models import (
    MultiPeriodDiscriminator,
    build_discriminator_from_config,
    build_generator_from_config,
)
from gptsovits_train.models.generator import PRO_VERSIONS
from gptsovits_train.train.checkpointing import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    CheckpointManager,
    load_checkpoint,
)
from gptsovits_train.train.cpu_memory import cpu_threads, keep_freed_memory
from gptsovits_train.train.dataset import (
    LengthBucketBatchSampler,
    SoVITSDataset,
    load_splits,
    repeats_for,
    train_loader,
    val_indices,
)
from gptsovits_train.train.distributed import (
    DistContext,
    any_true,
    barrier,
    gather_objects,
    setup_distributed,
    teardown_distributed,
)
from gptsovits_train.train.early_stopping import EarlyStopping
from gptsovits_train.train.metrics import MetricsLog, plot_curves, read_metrics, write_summary
from gptsovits_train.train.nan_guard import NanGuard
from gptsovits_train.train.precision import Precision, make_scaler, resolve_precision
from gptsovits_train.train.rng import rng_state, seed_everything, set_rng_state
from gptsovits_train.train.schedulers import build_scheduler, current_lrs
from gptsovits_train.train.spk_sim import SpeakerSimilarity
from gptsovits_train.train.step import train_step
from gptsovits_train.train.tensorboard import TensorBoardLogger
from gptsovits_train.train.validation import ValResult, validate, validation_loader

LOG = logging.getLogger(__name__)

#: Generator parameters trained at `lr * text_low_lr_rate` (official: text embedding, text encoder, MRTE).
TEXT_LOW_LR_PREFIXES = ("enc_p.text_embedding.", "enc_p.encoder_text.", "enc_p.mrte.")
#: Generator parts that are never trained in fine-tuning (facts §6.6).
FROZEN_PREFIXES = ("ssl_proj.", "quantizer.")


# ------------------------------------------------------------------------------------------------ API
@dataclass
class StepInfo:
    """Passed to the `on_step` callback after every optimizer step."""

    epoch: int
    step: int
    batch_in_epoch: int
    values: dict[str, float]
    generator: nn.Module
    discriminator: nn.Module
    data_wait_s: float  # time this step waited for its batch
    step_time_s: float  # time of the step itself (forward, backward, updates)
    batch_size: int


class ValidateFn(Protocol):
    """Validation of the bare generator; `final` is True for the check after the best weights are reloaded."""

    def __call__(self, generator: nn.Module, epoch: int, *, final: bool) -> ValResult: ...


@dataclass
class FitResult:
    """How a `fit` run ended (the same on every DDP rank)."""

    run_dir: Path
    stop_reason: str  # early_stopping | max_epochs | max_steps | interrupted
    stop_message: str
    best_epoch: int | None
    best_value: float | None  # the monitored validation metric at the best epoch
    val_after_reload: float | None  # the same metric, re-measured after reloading best.pt at the end
    epochs_completed: int
    steps: int
    summary: dict[str, Any]


# -------------------------------------------------------------------------------------- small helpers
class _StopSignals:
    """SIGINT/SIGTERM ask the loop to stop after the current step (a second SIGINT aborts at once)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        LOG.warning(
            "%s received: stopping after this step, saving last.pt, then reloading the best weights "
            "(Ctrl-C again to abort at once)",
            signal.Signals(signum).name,
        )

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def _ignore_sigint_in_worker(_worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process (which stops cleanly)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def generator_param_groups(G: nn.Module, lr: float, text_low_lr_rate: float) -> list[dict[str, Any]]:
    """The official 4 AdamW groups: base, then text embedding / text encoder / MRTE at `lr * rate`.

    Frozen parameters (`requires_grad=False`) are left out.
    """
    base: list[nn.Parameter] = []
    low: dict[str, list[nn.Parameter]] = {p: [] for p in TEXT_LOW_LR_PREFIXES}
    for name, param in G.named_parameters():
        if not param.requires_grad:
            continue
        prefix = next((p for p in TEXT_LOW_LR_PREFIXES if name.startswith(p)), None)
        (low[prefix] if prefix else base).append(param)
    groups: list[dict[str, Any]] = [{"params": base, "lr": lr, "name": "base"}]
    for prefix, params in low.items():
        if params:
            groups.append({"params": params, "lr": lr * text_low_lr_rate, "name": prefix.rstrip(".")})
    return groups


def _freeze(G: nn.Module) -> int:
    """Freeze `ssl_proj` and the quantizer; return the number of frozen parameter elements."""
    n = 0
    for name, param in G.named_parameters():
        if name.startswith(FROZEN_PREFIXES):
            param.requires_grad_(False)
            n += param.numel()
    return n


def _init_from_pretrained(G: nn.Module, D: nn.Module, cfg: Config) -> dict[str, str]:
    """Load the official pretrained s2G/s2D named in the config (strict key report); return the reports."""
    from gptsovits_train.checkpoints import EXPORT_DROPPED_PATTERNS, load_state_dict_strict, read_weights
    from gptsovits_train.checkpoints.version import require_same_version

    t = cfg.train
    reports: dict[str, str] = {}
    for role, path, module in (("generator", t.pretrained_s2G, G), ("discriminator", t.pretrained_s2D, D)):
        if path is None:
            LOG.warning(
                "no pretrained %s (train.pretrained_s2%s): random init — fine for tests and the demo, "
                "not for a usable voice",
                role,
                "G" if role == "generator" else "D",
            )
            reports[role] = "random init"
            continue
        wf = read_weights(path)
        state = wf.state
        if role == "discriminator" and wf.run is not None:  # a gsv-train run checkpoint holds both
            if wf.run.discriminator is None:
                raise GsvError(f"{path}: this run checkpoint holds no discriminator")
            state = wf.run.discriminator
        elif wf.role != role:
            key = "pretrained_s2G" if role == "generator" else "pretrained_s2D"
            raise GsvError(f"{path}: holds {wf.role} weights, but train.{key} needs {role} weights")
        require_same_version(state, cfg.model.version, role=role, what=str(path))
        allow = EXPORT_DROPPED_PATTERNS if (role == "generator" and wf.kind == "official-export") else ()
        if allow:
            LOG.warning(
                "%s is an exported model without enc_q: the posterior encoder starts from random init", path
            )
        report = load_state_dict_strict(module, state, allow_missing=allow, what=f"{path} ({role})")
        reports[role] = f"{path}: {report.summary()}"
        LOG.info("initialised the %s from %s (%s)", role, path, report.summary())
    if t.pretrained_s2G is None:
        G_any: Any = G
        G_any.quantizer.initialize_random_(torch.Generator().manual_seed(t.seed))
    return reports


def _plain_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state dict on CPU in fp32 (the checkpoint contract)."""
    out = {}
    for key, tensor in module.state_dict().items():
        value = tensor.detach().cpu()
        out[key] = value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
    return out


_RESUME_MUST_MATCH = ("audio", "model")


def _check_resume_config(saved: dict[str, Any], cfg: Config) -> None:
    """Refuse to resume with another model/audio/dataset; log every other changed setting."""
    now = cfg.to_dict()
    for section in _RESUME_MUST_MATCH:
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


def _fmt_time(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


# ----------------------------------------------------------------------------------------------- fit
def fit(
    cfg: Config,
    run_dir: Path | str,
    *,
    resume: bool = False,
    progress: bool = True,
    validate_fn: ValidateFn | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
) -> FitResult:
    """Train the SoVITS generator/discriminator described by `cfg` into `run_dir`.

    Args:
        cfg: the resolved configuration (`train.dataset` must name a prepared dataset).
        run_dir: the run folder (created; must not already hold a run unless `resume`).
        resume: continue the run in `run_dir` from its `last.pt`.
        progress: show a progress bar per epoch (rank 0 only).
        validate_fn: replaces the real validation (tests drive the loop with scripted values).
        on_step: called after every optimizer step.

    Raises:
        GsvError: bad dataset, run folder or config; training diverged beyond the NaN guard.
    """
    ctx = setup_distributed(cfg.train.device)
    try:
        return _fit(cfg, RunLayout(Path(run_dir)), ctx, resume, progress, validate_fn, on_step)
    finally:
        teardown_distributed(ctx)


def _fit(
    cfg: Config,
    layout: RunLayout,
    ctx: DistContext,
    resume: bool,
    progress: bool,
    validate_fn: ValidateFn | None,
    on_step: Callable[[StepInfo], None] | None,
) -> FitResult:
    t = cfg.train
    device, main = ctx.device, ctx.is_main
    wall_start = time.monotonic()

    # ------------------------------------------------------------------ 1. run folder checks, precision
    if t.dataset is None:
        raise GsvError("train.dataset is not set: point it at a folder made by `gsv-train prepare`")
    if resume and not layout.last.is_file():
        raise GsvError(f"nothing to resume: {layout.last} does not exist")
    if not resume and layout.last.exists():
        raise GsvError(
            f"{layout.root} already holds a run ({layout.last}); pass --resume to continue it, "
            "or choose another --run-dir"
        )
    precision: Precision = resolve_precision(t.precision, device)
    if device.type == "cpu":
        keep_freed_memory()  # glibc: no page-fault storm per step (see cpu_memory.py)
        threads = cpu_threads(t.cpu_threads, t.num_workers, ctx.world_size)
        if threads is not None:
            torch.set_num_threads(threads)
        LOG.info("CPU: %d torch threads per process", torch.get_num_threads())
    if device.type == "cuda" and t.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    LOG.info(
        "device %s, precision %s, %d process(es); run folder %s",
        device,
        precision,
        ctx.world_size,
        layout.root,
    )

    # ------------------------------------------------------------------ 2. data
    pro = cfg.model.version in PRO_VERSIONS  # v2Pro/v2ProPlus: batches carry sv_emb
    splits = load_splits(
        t.dataset,
        cfg.audio,
        ssl_dim=cfg.model.ssl_dim,
        sv_dim=cfg.model.sv_dim if pro else None,
        boundaries=t.bucket_boundaries,
        max_val_clips=t.val_max_clips,
    )
    segment_frames = cfg.model.segment_size // cfg.audio.hop_length
    if t.bucket_boundaries[0] < segment_frames:
        raise GsvError(
            f"train.bucket_boundaries starts at {t.bucket_boundaries[0]} frames, shorter than the "
            f"{segment_frames}-frame training segment (model.segment_size / audio.hop_length)"
        )
    train_ds = SoVITSDataset(splits.root, splits.train, cfg.audio, with_sv=pro)
    val_ds = SoVITSDataset(splits.root, splits.val, cfg.audio, with_sv=pro)
    repeats = repeats_for(len(train_ds), t.min_items_per_epoch)
    sampler = LengthBucketBatchSampler(
        train_ds.lengths,
        t.batch_size,
        t.bucket_boundaries,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        repeats=repeats,
        seed=t.seed,
    )
    loader = train_loader(
        train_ds,
        sampler,
        num_workers=t.num_workers,
        pin_memory=device.type == "cuda",
        seed=t.seed,
        worker_init_fn=_ignore_sigint_in_worker,
    )
    val_loader = validation_loader(
        val_ds, val_indices(len(val_ds), ctx.rank, ctx.world_size), num_workers=t.num_workers
    )
    batches_per_epoch = sampler.num_batches
    train_minutes = sum(c.duration for c in splits.train) / 60
    LOG.info(
        "data: %d train clips (%.1f min), %d validation clips; %d item(s)/epoch (x%d), "
        "%d step(s)/epoch of %d",
        len(train_ds),
        train_minutes,
        len(val_ds),
        len(train_ds) * repeats,
        repeats,
        batches_per_epoch,
        t.batch_size,
    )

    # ------------------------------------------------------------------ 3. models, optimizers, helpers
    G = build_generator_from_config(cfg.model, cfg.audio, seed=t.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(t.seed + 1)
        if t.discriminator_periods == []:  # the scale discriminator alone (tiny test configs)
            D = MultiPeriodDiscriminator((), use_spectral_norm=cfg.model.use_spectral_norm)
        else:
            D = build_discriminator_from_config(cfg.model, periods=t.discriminator_periods)
    init_reports = {"generator": "resumed", "discriminator": "resumed"}
    if not resume:
        init_reports = _init_from_pretrained(G, D, cfg)
    n_frozen = _freeze(G)
    G.to(device)
    D.to(device)
    g_params = [p for p in G.parameters() if p.requires_grad]
    d_params = [p for p in D.parameters() if p.requires_grad]
    LOG.info(
        "generator %.2fM trainable (%.2fM frozen: ssl_proj, quantizer), discriminator %.2fM",
        sum(p.numel() for p in g_params) / 1e6,
        n_frozen / 1e6,
        sum(p.numel() for p in d_params) / 1e6,
    )
    optim_g = torch.optim.AdamW(
        generator_param_groups(G, t.learning_rate, t.text_low_lr_rate),
        t.learning_rate,
        betas=t.betas,
        eps=t.eps,
        weight_decay=t.weight_decay,
        foreach=True,  # multi-tensor update (torch's default on CUDA; much faster than the loop on CPU)
    )
    optim_d = torch.optim.AdamW(
        d_params, t.learning_rate, betas=t.betas, eps=t.eps, weight_decay=t.weight_decay, foreach=True
    )
    scaler = make_scaler(device, precision)
    sched_g = build_scheduler(t.scheduler, optim_g, threshold=t.early_stopping.min_delta)
    sched_d = build_scheduler(t.scheduler, optim_d, threshold=t.early_stopping.min_delta)
    early = EarlyStopping.from_config(t.early_stopping)
    monitor = t.early_stopping.monitor
    ckpts = CheckpointManager(
        layout, top_k=t.keep_top_k, monitor=monitor, mode=t.early_stopping.mode, write=main
    )
    spk_sim = SpeakerSimilarity(t.spk_sim_model, device, cfg.audio.sampling_rate) if t.spk_sim_model else None
    guard = NanGuard(t.nan_patience, t.nan_max_rollbacks)
    G_train: nn.Module = G
    D_train: nn.Module = D
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        # Every trainable parameter takes part in each forward (the frozen ones have requires_grad=False),
        # so DDP needs no unused-parameter search (the official trainer pays for one).
        G_train = DDP(G, device_ids=ids, find_unused_parameters=False)
        D_train = DDP(D, device_ids=ids, find_unused_parameters=False)

    # ------------------------------------------------------------------ 4. fresh start or resume
    step, start_epoch, batches_done = 0, 1, 0
    epoch_sums: dict[str, float] = {}
    elapsed_before, resumes = 0.0, 0
    last_metrics: dict[str, float] = {}
    if resume:
        ck = load_checkpoint(layout.last)
        _check_resume_config(ck["config"], cfg)
        try:
            G.load_state_dict(ck["generator"])
            D.load_state_dict(ck["discriminator"])
            optim_g.load_state_dict(ck["optim_g"])
            optim_d.load_state_dict(ck["optim_d"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{layout.last}: does not match this model ({exc})") from None
        if ck["scaler"]:
            scaler.load_state_dict(ck["scaler"])
        sched_g.load_state_dict(ck["scheduler_g"])
        sched_d.load_state_dict(ck["scheduler_d"])
        early.load_state_dict(ck["early_stopping"])
        ckpts.load_state_dict(ck["top_k"])
        prog = ck["progress"]
        guard.load_state_dict(prog["nan"])
        step = int(ck["step"])
        if prog["epoch_finished"]:
            start_epoch, batches_done = int(ck["epoch"]) + 1, 0
        else:
            start_epoch, batches_done = int(ck["epoch"]), int(prog["batches_done"])
            epoch_sums = {k: float(v) for k, v in prog["epoch_sums"].items()}
        elapsed_before, resumes = float(prog["elapsed_s"]), int(prog["resumes"]) + 1
        last_metrics = dict(ck.get("metrics") or {})
        rng_states = ck["rng"]["ranks"]
        if len(rng_states) == ctx.world_size:
            set_rng_state(rng_states[ctx.rank])
        else:
            LOG.warning(
                "checkpoint holds RNG states of %d process(es), this run has %d: random streams re-seeded",
                len(rng_states),
                ctx.world_size,
            )
            seed_everything(t.seed + ctx.rank + 1000 * step)
        LOG.info(
            "resumed from %s: epoch %d%s, step %d",
            layout.last,
            int(ck["epoch"]),
            "" if prog["epoch_finished"] else f" (batch {batches_done} of {batches_per_epoch})",
            step,
        )
        del ck
    else:
        seed_everything(t.seed + ctx.rank)

    if main:  # data, models and any resume state are usable: the run folder gets this config
        layout.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(layout.config, cfg.to_yaml())
    metrics = MetricsLog(layout.metrics, enabled=main, time_offset=elapsed_before)
    if resume and main:
        metrics.rewind(step, start_epoch - 1)
    tb = TensorBoardLogger(
        layout.tb_dir, enabled=main and t.tensorboard, purge_step=step + 1 if resume else None
    )

    def checkpoint_state(epoch: int, *, finished: bool, metrics_now: dict[str, float]) -> dict[str, Any]:
        """The checkpoint dict (collective under DDP: gathers every rank's RNG state)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "tool_version": __version__,
            "generator": _plain_state(G),
            "discriminator": _plain_state(D),
            "optim_g": optim_g.state_dict(),
            "optim_d": optim_d.state_dict(),
            "scaler": scaler.state_dict(),
            "scheduler_g": sched_g.state_dict(),
            "scheduler_d": sched_d.state_dict(),
            "early_stopping": early.state_dict(),
            "rng": {"world_size": ctx.world_size, "ranks": gather_objects(rng_state(), ctx)},
            "epoch": epoch,
            "step": step,
            "metrics": dict(metrics_now),
            "best": None,  # filled in by the CheckpointManager
            "config": cfg.to_dict(),
            "progress": {
                "epoch_finished": finished,
                "batches_done": batches_done,
                "epoch_sums": dict(epoch_sums),
                "nan": guard.state_dict(),
                "elapsed_s": elapsed_before + (time.monotonic() - wall_start),
                "resumes": resumes,
                "precision": precision,
                "world_size": ctx.world_size,
            },
        }

    def save(epoch: int, *, finished: bool, score: float | None, metrics_now: dict[str, float]) -> bool:
        state = checkpoint_state(epoch, finished=finished, metrics_now=metrics_now)
        outcome = ckpts.save(state, epoch=epoch, step=step, score=score)
        barrier(ctx)
        return outcome.is_best

    def run_validation(epoch: int, *, final: bool) -> ValResult:
        if validate_fn is not None:
            return validate_fn(G, epoch, final=final)
        return validate(
            G,
            val_loader,
            audio=cfg.audio,
            train=t,
            device=device,
            precision=precision,
            ctx=ctx,
            n_samples=t.val_audio_samples if main else 0,
            spk_sim=spk_sim,
        )

    def rollback(epoch: int) -> None:
        """Reload the last good checkpoint into models/optimizers and lower the learning rates."""
        lrs = {"g": current_lrs(optim_g), "d": current_lrs(optim_d)}
        ck = load_checkpoint(layout.last)
        G.load_state_dict(ck["generator"])
        D.load_state_dict(ck["discriminator"])
        optim_g.load_state_dict(ck["optim_g"])
        optim_d.load_state_dict(ck["optim_d"])
        if ck["scaler"]:
            scaler.load_state_dict(ck["scaler"])
        for opt, old in ((optim_g, lrs["g"]), (optim_d, lrs["d"])):
            for group, lr in zip(opt.param_groups, old, strict=True):
                group["lr"] = lr * t.nan_lr_factor
        LOG.warning(
            "%d non-finite steps in a row: rolled back to %s (epoch %d, step %d) with lr x%g -> %.3g",
            t.nan_patience,
            layout.last.name,
            int(ck["epoch"]),
            int(ck["step"]),
            t.nan_lr_factor,
            optim_g.param_groups[0]["lr"],
        )
        metrics.log(
            "nan_rollback",
            epoch=epoch,
            step=step,
            restored_step=int(ck["step"]),
            **{"lr/g": current_lrs(optim_g)[0]},
        )

    if not resume:
        # Epoch-0 checkpoint: the first resume and NaN-rollback point.
        save(0, finished=True, score=None, metrics_now={})
        if main:
            metrics.log("start", epoch=0, step=0, init=init_reports, precision=precision, device=str(device))

    # ------------------------------------------------------------------ 5. epochs
    stop_reason, stop_message = "max_epochs", f"reached train.epochs = {t.epochs}"
    epochs_completed = start_epoch - 1
    if resume and early.enabled and early.wait_count >= early.patience:
        stop_reason, stop_message = "early_stopping", early.stop_reason or "early stopping had triggered"
        start_epoch = t.epochs + 1  # nothing left to train: go straight to the end
    if resume and t.max_steps is not None and step >= t.max_steps:
        stop_reason, stop_message = "max_steps", f"reached train.max_steps = {t.max_steps}"
        start_epoch = t.epochs + 1
    signals = _StopSignals()
    signals.install()
    epoch_times: list[float] = []
    try:
        for epoch in range(start_epoch, t.epochs + 1):
            sampler.set_epoch(epoch, start_batch=batches_done)
            G_train.train()
            D_train.train()
            t_epoch = time.monotonic()
            data_wait = 0.0
            interrupted = hit_max_steps = False
            bar = tqdm(
                total=batches_per_epoch,
                initial=batches_done,
                desc=f"epoch {epoch}/{t.epochs}",
                unit="step",
                leave=False,
                dynamic_ncols=True,
                disable=not (progress and main),
            )
            t_fetch = time.perf_counter()
            for cpu_batch in loader:
                t_got = time.perf_counter()
                data_wait += t_got - t_fetch
                batch = cpu_batch.to(device, non_blocking=True)
                result = train_step(
                    G_train,
                    D_train,
                    batch,
                    optim_g=optim_g,
                    optim_d=optim_d,
                    scaler=scaler,
                    g_params=g_params,
                    d_params=d_params,
                    segment_frames=segment_frames,
                    audio=cfg.audio,
                    train=t,
                    device=device,
                    precision=precision,
                    ctx=ctx,
                )
                step += 1
                batches_done += 1
                verdict = guard.record(result.ok)
                if verdict == "ok":
                    for key, value in result.values.items():
                        epoch_sums[key] = epoch_sums.get(key, 0.0) + value
                    epoch_sums["n"] = epoch_sums.get("n", 0.0) + 1
                else:
                    metrics.log("nan_skip", epoch=epoch, step=step, **result.values)
                if verdict == "rollback":
                    rollback(epoch)
                elif verdict == "give_up":
                    raise GsvError(
                        f"training diverged: non-finite losses after {guard.rollbacks} rollbacks with lower "
                        "learning rates; lower train.learning_rate, use precision fp32, or check the dataset"
                    )
                lr_g, lr_d = optim_g.param_groups[0]["lr"], optim_d.param_groups[0]["lr"]
                if step % t.log_every == 0:
                    record = {**result.values, "lr/g": lr_g, "lr/d": lr_d}
                    metrics.log("step", epoch=epoch, step=step, **record)
                    tb.scalars(record, step)
                bar.update(1)
                bar.set_postfix(
                    g=f"{result.values['loss/g']:.3g}",
                    d=f"{result.values['loss/d']:.3g}",
                    mel=f"{result.values['loss/mel']:.3f}",
                    refresh=False,
                )
                if on_step is not None:
                    on_step(
                        StepInfo(
                            epoch,
                            step,
                            batches_done,
                            result.values,
                            G,
                            D,
                            data_wait_s=t_got - t_fetch,
                            step_time_s=time.perf_counter() - t_got,
                            batch_size=batch.size,
                        )
                    )
                if any_true(signals.requested, ctx):
                    interrupted = True
                    break
                if t.max_steps is not None and step >= t.max_steps:
                    hit_max_steps = True
                    break
                t_fetch = time.perf_counter()
            bar.close()
            epoch_time = time.monotonic() - t_epoch

            if interrupted:
                save(epoch, finished=False, score=None, metrics_now=last_metrics)
                stop_reason = "interrupted"
                name = signal.Signals(signals.signum).name if signals.signum else "signal"
                stop_message = f"{name} during epoch {epoch} (step {step}); last.pt holds the position"
                break

            # -------------------------------------------- end of the epoch: schedule, validate, checkpoint
            finished = not hit_max_steps or batches_done >= batches_per_epoch
            n = max(epoch_sums.get("n", 0.0), 1.0)
            train_means = {
                f"train/{k.split('/', 1)[1]}": v / n for k, v in epoch_sums.items() if k.startswith("loss/")
            }
            if finished:
                sched_g.step_epoch()
                sched_d.step_epoch()
            do_val = (epoch - 1) % t.val_every == 0 or epoch == t.epochs or hit_max_steps
            score: float | None = None
            val: ValResult | None = None
            should_stop, es_message = False, ""
            if do_val:
                val = run_validation(epoch, final=False)
                score = val.metrics[monitor]
                plateau_value = score if t.early_stopping.mode == "min" else -score  # the plateau minimises
                sched_g.step_validation(plateau_value)
                sched_d.step_validation(plateau_value)
                should_stop, es_message = early.step(score, epoch)
            last_metrics = {**train_means, **(val.metrics if val else {})}
            if finished:  # the checkpoint's position: the start of the next epoch
                batches_done, epoch_sums = 0, {}
            is_best = save(epoch, finished=finished, score=score, metrics_now=last_metrics)
            epochs_completed = epoch if finished else epoch - 1
            lr_g, lr_d = current_lrs(optim_g)[0], current_lrs(optim_d)[0]
            epoch_record = {
                **train_means,
                "lr/g": lr_g,
                "lr/d": lr_d,
                "time_s": epoch_time,
                "data_wait_frac": data_wait / epoch_time if epoch_time > 0 else 0.0,
                "skipped_steps": guard.skipped_steps,
                "partial": not finished,
            }
            metrics.log("epoch", epoch=epoch, step=step, **epoch_record)
            tb.scalars({k: v for k, v in epoch_record.items() if isinstance(v, float)}, step)
            best_value = ckpts.best_value
            line = (
                f"epoch {epoch}/{t.epochs} | train mel {train_means.get('train/mel', math.nan):.4f} "
                f"g {train_means.get('train/g', math.nan):.3f} d {train_means.get('train/d', math.nan):.3f}"
            )
            if val is not None:
                metrics.log(
                    "val",
                    epoch=epoch,
                    step=step,
                    **val.metrics,
                    improved=is_best,
                    best=best_value,
                    best_epoch=ckpts.best_epoch,
                    patience_left=early.patience_left,
                    clips=val.n_clips,
                )
                tb.scalars(val.metrics, step)
                for i, sample in enumerate(val.samples):
                    tb.audio(f"val_audio/{i}_{sample.clip_id}", sample.audio, step, cfg.audio.sampling_rate)
                    tb.mel_image(f"val_mel/{i}_{sample.clip_id}", sample.mel, step)
                    if epoch == 1 or (resume and epoch == start_epoch):
                        tb.mel_image(f"val_mel_target/{i}_{sample.clip_id}", sample.target_mel, step)
                if is_best:
                    status = "new best"
                elif best_value is None:
                    status = "no best yet"
                else:
                    status = f"best {best_value:.4f} @{ckpts.best_epoch}"
                line += (
                    f" | {monitor} {val.metrics[monitor]:.4f} ({status})"
                    f" | patience {early.patience_left}/{early.patience}"
                )
                LOG.debug("early stopping: %s", es_message)
            epoch_times.append(epoch_time)
            remaining = (t.epochs - epoch) * (sum(epoch_times) / len(epoch_times))
            line += f" | lr {lr_g:.2e} | {epoch_time:.1f}s (<= {_fmt_time(remaining)} left)"
            LOG.info("%s", line)
            tb.flush()
            if should_stop:
                stop_reason, stop_message = "early_stopping", es_message
                break
            if hit_max_steps:
                stop_reason, stop_message = "max_steps", f"reached train.max_steps = {t.max_steps}"
                break
    finally:
        signals.restore()

    # ------------------------------------------------------------------ 6. reload the best weights
    LOG.info("run stopped: %s (%s)", stop_reason, stop_message)
    best = ckpts.best
    after: ValResult | None = None
    if best is not None and layout.best.is_file():
        best_state = load_checkpoint(layout.best)
        G.load_state_dict(best_state["generator"])
        D.load_state_dict(best_state["discriminator"])
        del best_state
        after = run_validation(int(best["epoch"]), final=True)
        metrics.log("final", epoch=int(best["epoch"]), step=step, **after.metrics, best=best["value"])
        value = after.metrics[monitor]
        if value == best["value"]:
            LOG.info(
                "reloaded best.pt (epoch %d): %s %.6f, exactly the recorded best",
                best["epoch"],
                monitor,
                value,
            )
        else:
            LOG.warning(
                "reloaded best.pt (epoch %d): %s %.6f differs from the recorded best %.6f by %.3g",
                best["epoch"],
                monitor,
                value,
                best["value"],
                value - best["value"],
            )
    else:
        LOG.warning("no validation has finished: there are no best weights to reload")

    wall = elapsed_before + (time.monotonic() - wall_start)
    summary: dict[str, Any] = {
        "run_dir": str(layout.root),
        "stop_reason": stop_reason,
        "stop_message": stop_message,
        "monitor": monitor,
        "best_epoch": best["epoch"] if best else None,
        "best_step": best["step"] if best else None,
        "best_value": best["value"] if best else None,
        "val_after_reload": after.metrics if after else None,
        "val_after_reload_value": after.metrics[monitor] if after else None,
        "reload_matches_best": bool(after and best and after.metrics[monitor] == best["value"]),
        "epochs_completed": epochs_completed,
        "max_epochs": t.epochs,
        "steps": step,
        "wall_time_s": round(wall, 3),
        "device": str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})",
        "precision": precision,
        "world_size": ctx.world_size,
        "resumes": resumes,
        "dataset": {
            "path": str(splits.root.root),
            "train_clips": len(splits.train),
            "val_clips": len(splits.val),
            "train_minutes": round(train_minutes, 3),
            "dropped_clips": {k: len(v) for k, v in splits.dropped.items()},
            "repeats_per_epoch": repeats,
            "steps_per_epoch": batches_per_epoch,
            "batch_size": t.batch_size,
        },
        "nan_guard": guard.state_dict(),
        "lr_final": {"g": current_lrs(optim_g)[0], "d": current_lrs(optim_d)[0]},
        "checkpoints": {
            "best": str(layout.best) if best else None,
            "last": str(layout.last),
            "top_k": {str(p): s for p, s in ckpts.best_k_models.items()},
        },
        "init": init_reports,
        "config_digest": cfg.digest(),
        "tool_version": __version__,
    }
    if main:
        write_summary(layout.summary, summary)
        plot_curves(read_metrics(layout.metrics), layout.curves, best_epoch=summary["best_epoch"])
    tb.close()
    barrier(ctx)
    return FitResult(
        run_dir=layout.root,
        stop_reason=stop_reason,
        stop_message=stop_message,
        best_epoch=summary["best_epoch"],
        best_value=summary["best_value"],
        val_after_reload=summary["val_after_reload_value"],
        epochs_completed=epochs_completed,
        steps=step,
        summary=summary,
    )
