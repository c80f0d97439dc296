"""The SoVITS stage: generator + multi-period discriminator, the official D+G step, deterministic validation.

What the engine (`loop.run_stage`) gets from this stage (see `stage.Stage`):

- data: the prepared dataset's cached features (`dataset.py`), length-bucketed batches; checks that the
  buckets hold at least one training segment;
- models: `SynthesizerTrn` + `MultiPeriodDiscriminator` from the config; `ssl_proj` and the quantizer are
  frozen (facts §6.6); AdamW with the official four generator groups (text embedding, text encoder and MRTE
  at `lr * text_low_lr_rate`); one grad scaler; a schedule per optimizer;
- initial weights: the official pretrained s2G/s2D (strict key report), or random init with a seeded
  random codebook;
- batch size: `batch_fit.BatchFit` (`batch_size: auto` measured on the longest clips; an out-of-memory
  error halves the items per pass, `step.fitted_step`);
- one step: `step.SovitsStep`; one validation: `validation.validate` (or a test's `validate_fn`), with
  `val/spk_sim` when `train.spk_sim_model` names an sv model;
- v2Pro/v2ProPlus: the dataset's speaker-verification features travel in `Batch.sv_emb` to the generator
  (training and validation); a Pro model never starts from v2 weights (`require_same_version`);
- checkpoint content: fp32 generator/discriminator state dicts, both optimizers, the scaler, both schedules;
- export: `checkpoints.export.export_best` (the official GPT-SoVITS file).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from gptsovits_train.config import Config
from gptsovits_train.errors import CheckpointError, GsvError
from gptsovits_train.models import build_discriminator_from_config, build_generator_from_config
from gptsovits_train.models.generator import PRO_VERSIONS
from gptsovits_train.report.listen_files import ListenClip
from gptsovits_train.train.batch_fit import (
    BatchFit,
    choose_batch_size,
    cuda_peak_bytes,
    optimizer_state_bytes,
    preserved_state,
    validation_out_of_memory,
)
from gptsovits_train.train.dataset import (
    LengthBucketBatchSampler,
    SoVITSDataset,
    collate,
    load_splits,
    repeats_for,
    train_loader,
    val_indices,
)
from gptsovits_train.train.distributed import DistContext
from gptsovits_train.train.precision import Precision, make_scaler
from gptsovits_train.train.schedulers import LrScheduler, build_scheduler
from gptsovits_train.train.signals import ignore_stop_signals
from gptsovits_train.train.spk_sim import SpeakerSimilarity
from gptsovits_train.train.stage import LrSchedule, StageData, StepOutput, ValResult
from gptsovits_train.train.step import SovitsStep, fitted_step
from gptsovits_train.train.validation import validate, validation_loader

LOG = logging.getLogger(__name__)

#: Generator parts that are never trained in fine-tuning (facts §6.6).
FROZEN_PREFIXES = ("ssl_proj.", "quantizer.")


class ValidateFn(Protocol):
    """Validation of the bare generator; `final` is True for the check after the best weights are reloaded."""

    def __call__(self, generator: nn.Module, epoch: int, *, final: bool) -> ValResult: ...


def generator_param_groups(G: nn.Module, lr: float, text_low_lr_rate: float) -> list[dict[str, Any]]:
    """The official 4 AdamW groups: base, then text embedding / text encoder / MRTE at `lr * rate`.

    Frozen parameters (`requires_grad=False`) are left out; empty groups too.
    """
    groups: dict[str, list[nn.Parameter]] = G.parameter_groups()  # type: ignore[operator]
    out: list[dict[str, Any]] = [{"params": groups.pop("base"), "lr": lr, "name": "base"}]
    for module, params in groups.items():
        if params:
            out.append({"params": params, "lr": lr * text_low_lr_rate, "name": f"enc_p.{module}"})
    return out


def freeze_for_fine_tuning(G: nn.Module) -> int:
    """Freeze `ssl_proj` and the quantizer; return the number of frozen parameter elements."""
    n = 0
    for name, param in G.named_parameters():
        if name.startswith(FROZEN_PREFIXES):
            param.requires_grad_(False)
            n += param.numel()
    return n


def init_from_pretrained(G: nn.Module, D: nn.Module, cfg: Config) -> dict[str, str]:
    """Load the official pretrained s2G/s2D named in the config (strict key report); return the reports.

    Without a pretrained generator the quantizer gets a seeded random codebook.
    """
    from gptsovits_train.checkpoints import EXPORT_DROPPED_PATTERNS, load_state_dict_strict, read_weights
    from gptsovits_train.checkpoints.version import require_same_version

    t = cfg.train
    reports: dict[str, str] = {}
    for role, path, module in (("generator", t.pretrained_s2G, G), ("discriminator", t.pretrained_s2D, D)):
        key = "pretrained_s2G" if role == "generator" else "pretrained_s2D"
        if path is None:
            LOG.warning(
                "no pretrained %s (train.%s): random init — fine for tests and the demo, "
                "not for a usable voice",
                role,
                key,
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


def plain_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state dict on CPU in fp32 (the checkpoint contract)."""
    out = {}
    for key, tensor in module.state_dict().items():
        value = tensor.detach().cpu()
        out[key] = value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
    return out


@contextlib.contextmanager
def usable_codebook(G: nn.Module) -> Iterator[None]:
    """A random codebook while the block runs when the generator has none yet (`batch_size: auto` measures
    before the initial weights are loaded; the values do not change the memory), then the codebook as it
    was."""
    quantizer: Any = G.quantizer
    if quantizer.is_initialized():
        yield
        return
    saved = {k: v.clone() for k, v in quantizer.state_dict().items()}
    quantizer.initialize_random_(torch.Generator().manual_seed(0))
    try:
        yield
    finally:
        quantizer.load_state_dict(saved)


class SovitsStage:
    """SoVITS fine-tuning as a `stage.Stage` (see the module docstring)."""

    name: str = "sovits"
    weight_keys: tuple[str, ...] = ("generator", "discriminator")
    resume_must_match: tuple[str, ...] = ("audio", "model")
    headline: tuple[tuple[str, str], ...] = (("mel", ".4f"), ("g", ".3f"), ("d", ".3f"))

    def __init__(self, cfg: Config, *, validate_fn: ValidateFn | None = None) -> None:
        self.cfg = cfg
        self.validate_fn = validate_fn
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedules: list[LrSchedule] = []
        t = cfg.train
        self.batch_fit = BatchFit(t.batch_size, cap=t.batch_size_cap, margin=t.auto_batch_margin)

    # ------------------------------------------------------------------------------------------- build
    def build(self, ctx: DistContext, precision: Precision) -> StageData:
        cfg, t = self.cfg, self.cfg.train
        self.ctx, self.precision, self.device = ctx, precision, ctx.device
        assert t.dataset is not None  # checked by the engine
        pro = cfg.model.version in PRO_VERSIONS  # v2Pro/v2ProPlus: batches carry sv_emb
        splits = load_splits(
            t.dataset,
            cfg.audio,
            ssl_dim=cfg.model.ssl_dim,
            sv_dim=cfg.model.sv_dim if pro else None,
            boundaries=t.bucket_boundaries,
            max_val_clips=t.val_max_clips,
        )
        self.segment_frames = cfg.model.segment_size // cfg.audio.hop_length
        if t.bucket_boundaries[0] < self.segment_frames:
            raise GsvError(
                f"train.bucket_boundaries starts at {t.bucket_boundaries[0]} frames, shorter than the "
                f"{self.segment_frames}-frame training segment (model.segment_size / audio.hop_length)"
            )
        train_ds = SoVITSDataset(splits.root, splits.train, cfg.audio, with_sv=pro)
        val_ds = SoVITSDataset(splits.root, splits.val, cfg.audio, with_sv=pro)
        self.spk_sim = (
            SpeakerSimilarity(t.spk_sim_model, self.device, cfg.audio.sampling_rate)
            if t.spk_sim_model
            else None
        )
        repeats = repeats_for(len(train_ds), t.min_items_per_epoch)
        self._build_models()
        self.batch_fit.can_halve = not ctx.distributed
        batch_size = choose_batch_size(
            self.batch_fit,
            self.device,
            measure=self.memory_probe(train_ds, partial(cuda_peak_bytes, self.device))
            if self.device.type == "cuda"
            else None,
            extra=optimizer_state_bytes([*self.g_params, *self.d_params]),
            ctx=ctx,
        )
        sampler = LengthBucketBatchSampler(
            train_ds.lengths,
            batch_size,
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
            pin_memory=self.device.type == "cuda",
            seed=t.seed,
            worker_init_fn=ignore_stop_signals,
        )
        self.val_loader = validation_loader(
            val_ds, val_indices(len(val_ds), ctx.rank, ctx.world_size), num_workers=t.num_workers
        )
        train_minutes = sum(c.duration for c in splits.train) / 60
        LOG.info(
            "data: %d train clips (%.1f min), %d validation clips; %d item(s)/epoch (x%d), "
            "%d step(s)/epoch of %d",
            len(train_ds),
            train_minutes,
            len(val_ds),
            len(train_ds) * repeats,
            repeats,
            sampler.num_batches,
            batch_size,
        )
        summary = {
            "path": str(splits.root.root),
            "train_clips": len(splits.train),
            "val_clips": len(splits.val),
            "train_minutes": round(train_minutes, 3),
            "dropped_clips": {k: len(v) for k, v in splits.dropped.items()},
            "repeats_per_epoch": repeats,
            "steps_per_epoch": sampler.num_batches,
            "batch_size": batch_size,
        }
        # the listening report's clips: the first `listen_clips` of the validation list (any process count)
        listen = [ListenClip(c.id, c.text, splits.root.root / c.path) for c in splits.val[: t.listen_clips]]
        return StageData(loader=loader, batches=sampler, summary=summary, listen=listen)

    def _build_models(self) -> None:
        cfg, t, device = self.cfg, self.cfg.train, self.device
        self.G = build_generator_from_config(cfg.model, cfg.audio, seed=t.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(t.seed + 1)
            periods = () if t.discriminator_periods == [] else t.discriminator_periods
            self.D = build_discriminator_from_config(cfg.model, periods=periods)
        n_frozen = freeze_for_fine_tuning(self.G)
        self.G.to(device)
        self.D.to(device)
        self.g_params = [p for p in self.G.parameters() if p.requires_grad]
        self.d_params = [p for p in self.D.parameters() if p.requires_grad]
        LOG.info(
            "generator %.2fM trainable (%.2fM frozen: ssl_proj, quantizer), discriminator %.2fM",
            sum(p.numel() for p in self.g_params) / 1e6,
            n_frozen / 1e6,
            sum(p.numel() for p in self.d_params) / 1e6,
        )
        self.optim_g = torch.optim.AdamW(
            generator_param_groups(self.G, t.learning_rate, t.text_low_lr_rate),
            t.learning_rate,
            betas=t.betas,
            eps=t.eps,
            weight_decay=t.weight_decay,
            # fused kernels (CUDA and CPU): the fastest update, and a non-finite step is skipped on the device
            # (`found_inf`, see step.skip_if_bad) without reading a flag back to the host
            fused=True,
        )
        self.optim_d = torch.optim.AdamW(
            self.d_params,
            t.learning_rate,
            betas=t.betas,
            eps=t.eps,
            weight_decay=t.weight_decay,
            fused=True,
        )
        self.optimizers = {"g": self.optim_g, "d": self.optim_d}
        self.scaler = make_scaler(device, self.precision)
        self.sched_g: LrScheduler = build_scheduler(t.scheduler, self.optim_g)
        self.sched_d: LrScheduler = build_scheduler(t.scheduler, self.optim_d)
        self.schedules = [self.sched_g, self.sched_d]
        self.G_train: nn.Module = self.G
        self.D_train: nn.Module = self.D
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            # Every trainable parameter takes part in each forward (the frozen ones have requires_grad=False),
            # so DDP needs no unused-parameter search (the official trainer pays for one).
            self.G_train = DDP(self.G, device_ids=ids, find_unused_parameters=False)
            self.D_train = DDP(self.D, device_ids=ids, find_unused_parameters=False)
        self.step = self._step(self.G_train, self.D_train)

    def _step(self, G: nn.Module, D: nn.Module) -> SovitsStep:
        return SovitsStep(
            G,
            D,
            optim_g=self.optim_g,
            optim_d=self.optim_d,
            scaler=self.scaler,
            g_params=self.g_params,
            d_params=self.d_params,
            segment_frames=self.segment_frames,
            audio=self.cfg.audio,
            train=self.cfg.train,
            device=self.device,
            precision=self.precision,
            ctx=self.ctx,
        )

    def memory_probe(
        self, dataset: SoVITSDataset, peak_bytes: Callable[[Callable[[], None]], int]
    ) -> Callable[[int], int]:
        """`measure(n)` of `batch_size: auto`: `peak_bytes` of one step's passes (no update) on the `n`
        longest training clips inside the buckets (repeated when there are fewer), on the bare models;
        every state is left as it was (`batch_fit.preserved_state`)."""
        bounds = self.cfg.train.bucket_boundaries
        inside = [i for i, n in enumerate(dataset.lengths) if bounds[0] < n <= bounds[-1]]
        longest = sorted(inside, key=lambda i: dataset.lengths[i], reverse=True)[: self.batch_fit.cap]
        samples = [dataset[i] for i in longest]
        dry = self._step(self.G, self.D)

        def measure(n: int) -> int:
            batch = collate([samples[i % len(samples)] for i in range(n)]).to(self.device)
            with preserved_state([self.G, self.D]), usable_codebook(self.G):
                self.G.train()
                self.D.train()
                return peak_bytes(lambda: dry.dry_run(batch))

        return measure

    def init_weights(self) -> dict[str, str]:
        return init_from_pretrained(self.G, self.D, self.cfg)

    def models(self) -> dict[str, nn.Module]:
        return {"generator": self.G, "discriminator": self.D}

    # ------------------------------------------------------------------------------------ step, validate
    def train_mode(self) -> None:
        self.G_train.train()
        self.D_train.train()

    def train_step(self, batch: Any) -> StepOutput:
        on_device = batch.to(self.device, non_blocking=True)
        result = fitted_step(self.step, on_device, self.batch_fit)
        return StepOutput(ok=result.ok, values=result.values, batch_size=on_device.size)

    def validate(self, epoch: int, *, final: bool) -> ValResult:
        if self.validate_fn is not None:
            return self.validate_fn(self.G, epoch, final=final)
        t = self.cfg.train
        try:
            return validate(
                self.G,
                self.val_loader,
                audio=self.cfg.audio,
                train=t,
                device=self.device,
                precision=self.precision,
                ctx=self.ctx,
                n_samples=max(t.val_audio_samples, t.listen_clips),  # the same on every rank (gathered)
                spk_sim=self.spk_sim,
            )
        except torch.OutOfMemoryError as exc:  # one clip per pass already: nothing to halve
            advice = (
                "the longest validation clip does not fit on this device; cut shorter clips "
                "(prepare.slicer.max_clip_seconds) or use a larger GPU"
            )
            raise validation_out_of_memory(exc, "1 clip", advice) from None

    # -------------------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": plain_state(self.G),
            "discriminator": plain_state(self.D),
            "optim_g": self.optim_g.state_dict(),
            "optim_d": self.optim_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "scheduler_g": self.sched_g.state_dict(),
            "scheduler_d": self.sched_d.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], *, schedules: bool = True) -> None:
        try:
            self.G.load_state_dict(state["generator"])
            self.D.load_state_dict(state["discriminator"])
            self.optim_g.load_state_dict(state["optim_g"])
            self.optim_d.load_state_dict(state["optim_d"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"the checkpoint does not match this model ({exc})") from None
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        if schedules:
            self.sched_g.load_state_dict(state["scheduler_g"])
            self.sched_d.load_state_dict(state["scheduler_d"])

    def load_weights(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["generator"])
        self.D.load_state_dict(state["discriminator"])

    def export(self, checkpoint: Any, out: Any = None, **options: Any) -> Any:
        """The official GPT-SoVITS SoVITS file of a run folder or checkpoint (`export_best`)."""
        from gptsovits_train.checkpoints.export import export_best

        return export_best(Path(checkpoint), out, **options)
