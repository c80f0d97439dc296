"""The GPT (s1) stage on the training engine: `Text2SemanticDecoder`, ScaledAdam, GPT validation.

What the engine (`loop.run_stage`) gets from this stage (see `stage.Stage`):

- data: the GPT view of the prepared dataset (`gpt_data.load_gpt_splits`: official filters, every clip
  left out reported with its reason in the run's ``gpt_dataset.json``), the official bucket sampler with
  the official epoch size and batch cap, the official collate;
- model: `Text2SemanticDecoder` from ``gpt.model``; initial weights from ``gpt.pretrained_s1`` (strict)
  or random;
- one loader batch: `gpt_step.GptStepper` (forward, backward, an optimizer step when ``gpt.accumulation``
  says so, the official LR 0.01 then 0.002 as a factor under the plateau schedule);
- validation: `gpt_validation` (loss per target token ``val/loss``, ``val/top1``, ``val/top3``,
  ``val/eos_acc``), sharded over ranks and summed;
- checkpoint content: the fp32 decoder, ScaledAdam, LR position, scaler, pending gradients, schedule;
- export: the official GPT file (`checkpoints.gpt_files.write_gpt_export`).

The engine reads its run settings from ``cfg.train``; `engine_config` gives it a config whose ``train``
carries the GPT section's epochs, batch size, precision, early stopping and scheduler.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gptsovits_train.config import Config
from gptsovits_train.errors import CheckpointError, GsvError
from gptsovits_train.fileio import atomic_write_json
from gptsovits_train.models.t2s import Text2SemanticDecoder
from gptsovits_train.train.batch_fit import (
    BatchFit,
    choose_batch_size,
    cuda_peak_bytes,
    optimizer_state_bytes,
    preserved_state,
    release_cuda_cache,
    validation_out_of_memory,
)
from gptsovits_train.train.distributed import DistContext, all_reduce_sum
from gptsovits_train.train.gpt_accumulation import AccumulationRule
from gptsovits_train.train.gpt_data import (
    GptBatch,
    GptDataset,
    OfficialBucketSampler,
    gpt_collate,
    load_gpt_splits,
    official_batch_size,
    official_repeats,
)
from gptsovits_train.train.gpt_step import GptStepper
from gptsovits_train.train.gpt_validation import metrics_from_sums, validation_sums
from gptsovits_train.train.precision import Precision
from gptsovits_train.train.schedulers import LrScheduler, build_scheduler
from gptsovits_train.train.stage import LrSchedule, StageData, StepOutput, ValResult

LOG = logging.getLogger(__name__)

DATASET_REPORT = "gpt_dataset.json"


def engine_config(cfg: Config) -> Config:
    """`cfg` with the GPT section's run settings in `train` (what the engine reads)."""
    g = cfg.gpt
    train = cfg.train.model_copy(
        update={
            "epochs": g.epochs,
            "batch_size": g.batch_size,
            "batch_size_cap": g.batch_size_cap,
            "precision": g.precision,
            "early_stopping": g.early_stopping,
            "scheduler": g.scheduler,
        }
    )
    return cfg.model_copy(update={"train": train})


def official_gpt_config(cfg: Config, batch_size: int | None = None) -> dict[str, Any]:
    """The official-layout config dict of a GPT export (what the official inference reads); `batch_size`:
    the size the run used (its `batch_size: auto` choice)."""
    g = cfg.gpt
    size = batch_size if batch_size is not None else g.batch_size
    return {
        "train": {"seed": cfg.train.seed, "epochs": g.epochs, "batch_size": size},
        "data": {"max_sec": g.max_sec, "pad_val": g.model.EOS},
        "model": g.model.to_official(),
    }


class _Batches:
    """The epoch's batches (`OfficialBucketSampler`) as collated `GptBatch`es with their position."""

    def __init__(self, dataset: GptDataset, sampler: OfficialBucketSampler) -> None:
        self.dataset = dataset
        self.sampler = sampler

    @property
    def num_batches(self) -> int:
        return math.ceil(self.sampler.per_rank / self.sampler.batch_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.sampler.set_epoch(epoch - 1, start_batch)  # the official sampler counts epochs from 0

    def __iter__(self) -> Iterator[tuple[int, int, GptBatch]]:
        start = self.sampler.start_batch
        for i, idx in enumerate(self.sampler):
            yield start + i, self.num_batches, gpt_collate([self.dataset[j] for j in idx])


class GptStage:
    """GPT (s1) fine-tuning as a `stage.Stage` (see the module docstring)."""

    name: str = "gpt"
    weight_keys: tuple[str, ...] = ("decoder",)
    resume_must_match: tuple[str, ...] = ()
    headline: tuple[tuple[str, str], ...] = (("per_token", ".4f"), ("top3_acc", ".3f"))

    def __init__(self, cfg: Config, run_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedules: list[LrSchedule] = []
        g = cfg.gpt
        self.batch_fit = BatchFit(g.batch_size, cap=g.batch_size_cap, margin=cfg.train.auto_batch_margin)
        self.val_batch = g.val_batch_size  # halved for the rest of the run when validation runs out of memory

    # ------------------------------------------------------------------------------------------- build
    def build(self, ctx: DistContext, precision: Precision) -> StageData:
        cfg, g = self.cfg, self.cfg.gpt
        self.ctx, self.precision, self.device = ctx, precision, ctx.device
        assert cfg.train.dataset is not None  # checked by the engine
        splits = load_gpt_splits(cfg.train.dataset, max_sec=g.max_sec)
        if self.run_dir is not None and ctx.is_main:
            atomic_write_json(self.run_dir / DATASET_REPORT, splits.report())
        train_ds, self.val_ds = GptDataset(splits.train), GptDataset(splits.val)
        repeats = official_repeats(len(train_ds), g.min_items_per_epoch)
        items = len(train_ds) * repeats
        rule = AccumulationRule(g.accumulation, g.accumulate_batches)
        self._build_model(rule)
        fit = self.batch_fit
        fit.can_halve = not ctx.distributed
        chosen = choose_batch_size(
            fit,
            self.device,
            measure=self.memory_probe(train_ds, partial(cuda_peak_bytes, self.device))
            if self.device.type == "cuda"
            else None,
            extra=optimizer_state_bytes(list(self.model.parameters())),
            cap=official_batch_size(fit.cap, items) if g.official_batch_cap else None,
            ctx=ctx,
        )
        batch = official_batch_size(chosen, items) if g.official_batch_cap else chosen
        if batch != chosen:
            LOG.info("gpt: batch size %d -> %d (official cap: epoch items // 4)", chosen, batch)
            fit.set_size(batch)
        sampler = OfficialBucketSampler(
            train_ds.seconds(),
            batch,
            repeats=repeats,
            num_replicas=ctx.world_size,
            rank=ctx.rank,
            seed=cfg.train.seed,
        )
        batches = _Batches(train_ds, sampler)
        steps = rule.check(batches.num_batches, batch)
        LOG.info(
            "gpt data: %d train clips (x%d per epoch), %d validation clips, %d left out; %d batch(es) of %d "
            "per epoch, %d optimizer step(s) per epoch (accumulation %s)",
            len(train_ds),
            repeats,
            len(self.val_ds),
            sum(len(v) for v in splits.filtered.values()),
            batches.num_batches,
            batch,
            steps,
            g.accumulation,
        )
        summary = {
            "path": str(splits.root.root),
            **splits.report(),
            "filtered": {k: len(v) for k, v in splits.filtered.items()},
            "repeats_per_epoch": repeats,
            "batches_per_epoch": batches.num_batches,
            "optimizer_steps_per_epoch": steps,
            "batch_size": batch,
        }
        return StageData(loader=batches, batches=batches, summary=summary)

    def _build_model(self, rule: AccumulationRule) -> None:
        g, device = self.cfg.gpt, self.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.train.seed)
            self.model = Text2SemanticDecoder(g.model).to(device)
        self.train_model: nn.Module = self.model
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            self.train_model = DDP(self.model, device_ids=ids, find_unused_parameters=False)
        self.stepper = GptStepper(
            self.train_model,
            rule=rule,
            text_mask=g.text_mask,
            device=device,
            precision=self.precision,
            first_lr=g.first_lr,
            lr=g.lr,
            fit=self.batch_fit,
        )
        self.optimizers = {"gpt": self.stepper.optimizer}
        self.schedule: LrScheduler = build_scheduler(g.scheduler, self.stepper.optimizer)
        self.schedules = [self.schedule]
        LOG.info("gpt model: %.2fM parameters", self.model.parameter_count() / 1e6)

    def memory_probe(
        self, dataset: GptDataset, peak_bytes: Callable[[Callable[[], None]], int]
    ) -> Callable[[int], int]:
        """`measure(n)` of `batch_size: auto`: `peak_bytes` of a forward+backward (no update) on the `n`
        longest training clips (repeated when there are fewer); every state is left as it was
        (`batch_fit.preserved_state`)."""
        seconds = dataset.seconds()
        longest = sorted(range(len(dataset)), key=lambda i: seconds[i], reverse=True)[: self.batch_fit.cap]
        items = [dataset[i] for i in longest]

        def measure(n: int) -> int:
            batch = gpt_collate([items[i % len(items)] for i in range(n)])
            with preserved_state([self.model]):
                self.model.train()
                return peak_bytes(lambda: self.stepper.dry_run(batch))

        return measure

    def init_weights(self) -> dict[str, str]:
        from gptsovits_train.checkpoints.gpt_files import load_gpt_weights_into

        path = self.cfg.gpt.pretrained_s1
        if path is None:
            LOG.warning(
                "no pretrained GPT (gpt.pretrained_s1): random init — fine for tests and the demo only"
            )
            return {"decoder": "random init"}
        wf = load_gpt_weights_into(self.model, path)
        return {"decoder": f"{path}: {len(wf.state)} tensors, strict ({wf.kind}, {wf.version})"}

    def models(self) -> dict[str, nn.Module]:
        return {"decoder": self.model}

    # ------------------------------------------------------------------------------------ step, validate
    def train_mode(self) -> None:
        self.train_model.train()

    def train_step(self, batch: Any) -> StepOutput:
        batch_idx, n_batches, gpt_batch = batch
        r = self.stepper.train_batch(gpt_batch, batch_idx, n_batches)
        if batch_idx == n_batches - 1:
            self.stepper.end_epoch()
        values = {"loss/total": r.loss, "loss/per_token": r.loss_per_token, "loss/top3_acc": r.acc_top3}
        return StepOutput(ok=r.finite, values=values, batch_size=gpt_batch.size)

    def validate(self, epoch: int, *, final: bool) -> ValResult:
        """Validation sums over this rank's share of the clips, `val_batch` clips per pass. Out of memory:
        the whole pass is redone with half as many clips per pass (the sums do not depend on it)."""
        del epoch, final
        mine = list(range(self.ctx.rank, len(self.val_ds), self.ctx.world_size))
        while True:
            size = self.val_batch
            batches = (
                gpt_collate([self.val_ds[j] for j in mine[i : i + size]]) for i in range(0, len(mine), size)
            )
            try:
                sums = validation_sums(self.model, batches, self.device).to(self.device)
                break
            except torch.OutOfMemoryError as exc:
                if size == 1:
                    advice = "the longest validation clip does not fit on this device"
                    raise validation_out_of_memory(exc, "1 clip", advice) from None
                self.val_batch = (size + 1) // 2
                LOG.warning(
                    "out of memory during validation with %d clips per pass: redoing it with %d "
                    "(for the rest of the run; the results do not depend on it)",
                    size,
                    self.val_batch,
                )
                release_cuda_cache()
        all_reduce_sum(sums, self.ctx)
        m = metrics_from_sums(sums.cpu())
        metrics = {"val/loss": m.loss, "val/top1": m.top1, "val/top3": m.top3, "val/eos_acc": m.eos_acc}
        return ValResult(metrics=metrics, n_clips=m.n_clips)

    # -------------------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {
            "decoder": {k: v.detach().cpu().float() for k, v in self.model.state_dict().items()},
            "stepper": self.stepper.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "gpt_model": self.cfg.gpt.model.model_dump(),
        }

    def load_state_dict(self, state: dict[str, Any], *, schedules: bool = True) -> None:
        try:
            self.model.load_state_dict(state["decoder"])
            self.stepper.load_state_dict(state["stepper"], lr_position=schedules)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"the checkpoint does not match this GPT model ({exc})") from None
        if schedules:
            self.schedule.load_state_dict(state["scheduler"])

    def load_weights(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["decoder"])

    def export(self, checkpoint: Any, out: Any = None, **options: Any) -> Any:
        """The official GPT file of a run checkpoint (see `export_gpt_checkpoint`)."""
        return export_gpt_checkpoint(Path(checkpoint), out, **options)


def export_gpt_checkpoint(
    checkpoint: Path, out: Path | None = None, *, name: str | None = None, force: bool = False
) -> Any:
    """Write the official GPT export (``<name>-e<epoch>.ckpt`` + manifest) of a GPT run checkpoint.

    `out`: a folder (default: the stage folder's ``exports/``) or a file path; `name`: default the run
    folder's name. Raises `GsvError` when the checkpoint is not a GPT one.
    """
    from gptsovits_train.checkpoints.gpt_files import gpt_export_name, write_gpt_export
    from gptsovits_train.config import config_from_dict
    from gptsovits_train.train.run_checkpoints import load_run_checkpoint

    state = load_run_checkpoint(checkpoint)
    if state.get("stage") != "gpt" or "decoder" not in state:
        raise GsvError(f"{checkpoint}: not a GPT stage checkpoint (stage {state.get('stage')!r})")
    cfg = config_from_dict(state["config"], str(checkpoint))
    stage_dir = checkpoint.parent.parent
    run_name = name or (stage_dir.parent.name if stage_dir.name == "gpt" else stage_dir.name)
    epoch, step = int(state["epoch"]), int(state["step"])
    filename = gpt_export_name(run_name, epoch)
    target = (
        (Path(out) / filename if Path(out).is_dir() else Path(out))
        if out
        else stage_dir / "exports" / filename
    )
    best = state.get("best")
    result = write_gpt_export(
        target,
        state["decoder"],
        official_gpt_config(cfg, (state.get("batch_fit") or {}).get("size")),
        epoch=epoch,
        step=step,
        best=json.loads(json.dumps(best)) if best is not None else None,
        source=str(checkpoint.resolve()),
        force=force,
    )
    return result
