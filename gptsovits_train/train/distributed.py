"""Process layout of a run: one process, or DDP under `torchrun` (env `RANK`/`WORLD_SIZE`/`LOCAL_RANK`).

A single process never initialises a process group. Under torchrun the backend is NCCL on CUDA and gloo on
CPU; rank 0 writes every file, all ranks take part in validation (results are summed across ranks).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from gptsovits_train.errors import GsvError

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank, world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialised_here: bool  # this process created the process group (and must destroy it)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _pick_device(requested: str, local_rank: int) -> torch.device:
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    if requested == "cuda":
        raise GsvError("train.device is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')")
    return torch.device("cpu")


def setup_distributed(requested_device: str = "auto") -> DistContext:
    """Read torchrun's environment; initialise a process group only when WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    device = _pick_device(requested_device, local_rank)
    if world_size <= 1:
        return DistContext(0, 1, 0, device, initialised_here=False)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    initialised_here = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        initialised_here = True
        LOG.info("rank %d/%d: process group initialised (%s) on %s", rank, world_size, backend, device)
    return DistContext(rank, world_size, local_rank, device, initialised_here)


def teardown_distributed(ctx: DistContext) -> None:
    if ctx.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum `tensor` over all ranks (in place; returned for convenience). A no-op in one process."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_true(flag: bool, ctx: DistContext) -> bool:
    """True only if `flag` is True on every rank."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device(ctx))
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def any_true(flag: bool, ctx: DistContext) -> bool:
    """True if `flag` is True on any rank."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device(ctx))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's `obj`, in rank order (a one-element list in one process)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def _collective_device(ctx: DistContext) -> torch.device:
    return ctx.device if ctx.device.type == "cuda" else torch.device("cpu")
