"""A toy stage for the engine's tests: a linear regression behind the `Stage` interface.

It shows what any stage (SoVITS today, the GPT stage next) gives the engine, and runs an epoch in
milliseconds, so the engine's own behaviour (resume, rollback, signals, the end of a run) is tested
without the cost of SoVITS.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gptsovits_train.config import Config, load_config
from gptsovits_train.errors import CheckpointError
from gptsovits_train.train.batch_fit import BatchFit
from gptsovits_train.train.distributed import DistContext
from gptsovits_train.train.precision import Precision
from gptsovits_train.train.schedulers import build_scheduler
from gptsovits_train.train.signals import ignore_stop_signals
from gptsovits_train.train.stage import LrSchedule, StageData, StepOutput, ValResult

N_ITEMS, BATCH = 8, 2


def toy_config(*overrides: str) -> Config:
    """Defaults + a dataset name (the toy stage makes its own data) and no TensorBoard."""
    return load_config(None, ["train.dataset=toy", "train.tensorboard=false", "train.device=cpu", *overrides])


class FixedBatches:
    """`EpochBatches`: the same batch order every epoch (resumable inside an epoch)."""

    def __init__(self) -> None:
        self.all = [list(range(i, i + BATCH)) for i in range(0, N_ITEMS, BATCH)]
        self.start_batch = 0

    @property
    def num_batches(self) -> int:
        return len(self.all)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.start_batch = start_batch

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.all[self.start_batch :])

    def __len__(self) -> int:
        return self.num_batches - self.start_batch


class ToyStage:
    """y = 2 x1 - x2 + 0.5, learnt by SGD; validation = MSE on fixed points (or a scripted function)."""

    name: str = "toy"
    weight_keys: tuple[str, ...] = ("model",)
    resume_must_match: tuple[str, ...] = ("model",)
    headline: tuple[tuple[str, str], ...] = (("mse", ".4f"),)

    def __init__(
        self,
        cfg: Config,
        *,
        num_workers: int = 0,
        scripted: Callable[[nn.Module, int, bool], float] | None = None,
    ) -> None:
        self.cfg = cfg
        self.num_workers = num_workers
        self.scripted = scripted
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedules: list[LrSchedule] = []
        self.batch_fit = BatchFit(BATCH, cap=BATCH, margin=0.0)

    def build(self, ctx: DistContext, precision: Precision) -> StageData:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(N_ITEMS, 2, generator=g)
        y = (2 * x[:, :1] - x[:, 1:] + 0.5).squeeze(1)
        self.val_x = torch.randn(4, 2, generator=g)
        self.val_y = (2 * self.val_x[:, :1] - self.val_x[:, 1:] + 0.5).squeeze(1)
        self.model = nn.Linear(2, 1)
        self.optim = torch.optim.SGD(self.model.parameters(), lr=self.cfg.train.learning_rate)
        self.optimizers = {"m": self.optim}
        self.schedule = build_scheduler(self.cfg.train.scheduler, self.optim)
        self.schedules = [self.schedule]
        batches = FixedBatches()
        loader = DataLoader(
            TensorDataset(x, y),
            batch_sampler=batches,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=ignore_stop_signals,
        )
        return StageData(loader=loader, batches=batches, summary={"items": N_ITEMS})

    def init_weights(self) -> dict[str, str]:
        with torch.no_grad():
            self.model.weight.zero_()
            self.model.bias.zero_()
        return {"model": "zeros"}

    def models(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def train_mode(self) -> None:
        self.model.train()

    def train_step(self, batch: Any) -> StepOutput:
        x, y = batch
        self.optim.zero_grad()
        loss = torch.mean((self.model(x).squeeze(1) - y) ** 2)
        loss.backward()
        ok = math.isfinite(loss.item())
        if ok:
            self.optim.step()
        return StepOutput(ok=ok, values={"loss/mse": loss.item()}, batch_size=len(x))

    def validate(self, epoch: int, *, final: bool) -> ValResult:
        if self.scripted is not None:
            value = self.scripted(self.model, epoch, final)
        else:
            with torch.no_grad():
                value = torch.mean((self.model(self.val_x).squeeze(1) - self.val_y) ** 2).item()
        return ValResult(metrics={"val/mel": value}, n_clips=4)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optim": self.optim.state_dict(),
            "schedule": self.schedule.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], *, schedules: bool = True) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.optim.load_state_dict(state["optim"])
        except (RuntimeError, KeyError) as exc:
            raise CheckpointError(f"does not match this model ({exc})") from None
        if schedules:
            self.schedule.load_state_dict(state["schedule"])

    def load_weights(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])

    def export(self, checkpoint: Any, out: Any = None, **options: Any) -> Any:
        state = torch.load(Path(checkpoint), weights_only=True)
        torch.save(state["model"], out)
        return out
