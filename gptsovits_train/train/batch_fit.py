"""The batch size that fits in memory: `batch_size: auto`, and halving after an out-of-memory error.

Two sizes, one owner (`BatchFit`, saved in every checkpoint):

- `size`: items per loader batch, i.e. per optimizer step — the configured `batch_size`, or the one
  `batch_size: auto` chose. It is fixed for the whole run (the sampler's batches, the position inside an
  epoch and a mid-epoch resume depend on it).
- `micro`: items per forward/backward pass. It starts at `size`; an out-of-memory error in a forward or
  backward pass halves it (`ceil(min(micro, items of the failed batch) / 2)`) for the rest of the run.
  A loader batch of `n > micro` items is then trained as consecutive pieces of at most `micro` items whose
  gradients are accumulated into the batch's single optimizer step (`pieces`), so the optimizer, the LR,
  the number of steps and the checkpoints' positions stay what the run had; only memory (and time) change.
  A piece is exactly the batch its items would have been collated into on their own
  (`dataset.Batch.piece`, `gpt_data.GptBatch.piece`).

An out-of-memory error with one item per pass, or while an optimizer update is being applied (its state
could be half-written), ends the run with one clear line (`OutOfMemory`); `last.pt` keeps the last saved
position. Under DDP every rank would have to agree on the pieces of each step, so halving is off there
and an out-of-memory error is the same clear error.

`batch_size: auto` (`choose_batch_size`): on CUDA the stage measures a real forward+backward of its `n`
longest training items (no optimizer update; weights, buffers, optimizers, scaler, gradients and RNG
states are left as they were, `preserved_state`) and keeps the largest `n <= batch_size_cap` whose peak
memory, plus the optimizer state that the first update will allocate, stays within `(1 - margin)` of
the memory this process can use. Sizes are tried by doubling from 1, then by bisection between the
largest size that fitted and the smallest that did not, so the result is the largest fitting size when
fitting is monotone in `n`. On CPU nothing is measured: host memory is not a per-process budget that
torch reports, and an exhausted host does not raise a catchable error; `auto` takes
`min(CPU_AUTO_BATCH, batch_size_cap)` (8: the default batch size) and says so.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
from torch import nn

from gptsovits_train.errors import GsvError
from gptsovits_train.train.distributed import DistContext, gather_objects

LOG = logging.getLogger(__name__)

#: `batch_size: auto` on a device whose memory is not measured (CPU): the default batch size.
CPU_AUTO_BATCH = 8


class OutOfMemory(GsvError):
    """Out of memory where halving the batch cannot help (one item per pass, an optimizer update, DDP)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's out-of-memory error (CUDA's `torch.cuda.OutOfMemoryError` is a subclass)."""
    return isinstance(exc, torch.OutOfMemoryError)


@contextlib.contextmanager
def applying_update(what: str) -> Iterator[None]:
    """Around an optimizer update/scaler update: an out-of-memory error here is fatal (`OutOfMemory`)."""
    try:
        yield
    except torch.OutOfMemoryError as exc:
        raise OutOfMemory(
            f"out of memory while applying the {what} update (its state may be half-written, so the step "
            f"cannot be redone): {_first_line(exc)}; lower the batch size or use a smaller model"
        ) from None


def validation_out_of_memory(exc: BaseException, per_pass: str, advice: str) -> OutOfMemory:
    """The clear error for an out-of-memory error during validation at `per_pass` (e.g. "1 clip")."""
    return OutOfMemory(f"out of memory during validation ({per_pass} per pass): {_first_line(exc)}; {advice}")


def release_cuda_cache() -> None:
    """Give the blocks an out-of-memory error left cached back to the device before a retry."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class BatchFit:
    """The run's batch size (`size`) and items per forward/backward pass (`micro`); see the module doc.

    Args:
        requested: the configured `batch_size` (an int, or "auto").
        cap: the largest size `auto` may choose (`batch_size_cap`).
        margin: the fraction of usable GPU memory `auto` leaves free.
        can_halve: False under DDP (an out-of-memory error is then an `OutOfMemory` error).
    """

    def __init__(
        self, requested: int | Literal["auto"], *, cap: int, margin: float, can_halve: bool = True
    ) -> None:
        self.requested = requested
        self.cap = cap
        self.margin = margin
        self.can_halve = can_halve
        self.size: int | None = None if requested == "auto" else int(requested)
        self.micro: int | None = self.size
        self.source = "config" if requested != "auto" else "unresolved"
        self.halvings: list[dict[str, Any]] = []
        self.position: tuple[int, int] = (0, 0)  # (epoch, step) of the step being trained; set by the engine
        self.on_halve: Callable[..., Any] | None = None  # the engine's metrics.jsonl event

    # ------------------------------------------------------------------------------------- the choice
    @property
    def resolved(self) -> bool:
        return self.size is not None

    def resolve(self, size: int, source: str) -> int:
        """Fix the run's batch size (`auto` chose `size`; `source` says how)."""
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        self.size = self.micro = size
        self.source = source
        return size

    def set_size(self, size: int) -> None:
        """The stage's sampler adjusted the size (e.g. the GPT's official cap): micro follows it down."""
        self.size = size
        self.micro = size if self.micro is None else min(self.micro, size)

    @property
    def batch_size(self) -> int:
        if self.size is None:
            raise RuntimeError("batch size not chosen yet (batch_size: auto before the stage's build)")
        return self.size

    # ------------------------------------------------------------------------------------------- pieces
    def pieces(self, n: int) -> list[slice]:
        """Consecutive slices of at most `micro` items covering a batch of `n` items."""
        m = max(1, self.micro or n)
        return [slice(i, min(i + m, n)) for i in range(0, n, m)]

    def halve(self, n: int, where: str, exc: BaseException) -> int:
        """After an out-of-memory error in a pass over a batch of `n` items: halve `micro` and record it.

        Raises `OutOfMemory` when one item per pass already failed, or when halving is off (DDP).
        """
        current = min(self.micro or n, n)
        epoch, step = self.position
        if not self.can_halve:
            raise OutOfMemory(
                f"out of memory in the {where} of step {step} (batch of {n}) with several processes, where "
                f"the batch cannot be halved during the run: {_first_line(exc)}; lower the batch size"
            )
        if current <= 1:
            raise OutOfMemory(
                f"out of memory in the {where} of step {step} even with one item per pass: "
                f"{_first_line(exc)}; this model does not fit on this device (try precision fp16/bf16, "
                "shorter clips via bucket_boundaries / max_sec, or a larger GPU)"
            )
        new = (current + 1) // 2
        record = {"epoch": epoch, "step": step, "old": current, "new": new, "where": where}
        self.micro = new
        self.halvings.append(record)
        if self.on_halve is not None:
            self.on_halve(**record)
        LOG.warning(
            "out of memory in the %s of step %d (%d items per pass): redoing it with %d items per pass, "
            "for the rest of the run (the optimizer still steps once per batch of %d)",
            where,
            step,
            current,
            new,
            self.size or n,
        )
        return new

    # -------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "cap": self.cap,
            "size": self.size,
            "micro": self.micro,
            "source": self.source,
            "halvings": [dict(h) for h in self.halvings],
        }

    def load_state_dict(self, state: dict[str, Any] | None) -> bool:
        """Continue a run's choice (a resume, before the stage's build). A checkpoint without one, or one
        made with another `batch_size`/cap setting, is not used (the configured setting is resolved
        afresh). Returns whether it was used."""
        if not state or state.get("size") is None:
            return False
        if state.get("requested") != self.requested or state.get("cap") != self.cap:
            LOG.warning(
                "batch size setting changed since the checkpoint (%r, cap %r -> %r, cap %r): using the new "
                "setting, and any earlier out-of-memory halving is forgotten",
                state.get("requested"),
                state.get("cap"),
                self.requested,
                self.cap,
            )
            return False
        self.size, self.micro = int(state["size"]), int(state["micro"])
        self.source = str(state["source"])
        self.halvings = [dict(h) for h in state.get("halvings", [])]
        if self.micro < self.size:
            LOG.info("resumed with %d items per pass (halved earlier in this run)", self.micro)
        return True


# ----------------------------------------------------------------------------------------- auto probe
def probe_batch_size(fits: Callable[[int], bool], cap: int) -> int:
    """The largest `n <= cap` with `fits(n)`: doubling from 1, then bisection (see the module doc).

    `fits(n)` runs the measurement (False: too much memory or an out-of-memory error). Returns 0 when not
    even `n = 1` fits.
    """
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    good, bad = 0, cap + 1  # fits(good) (0: vacuous); not fits(bad) (cap + 1: never tried)
    n = 1
    while n <= cap:
        if not fits(n):
            bad = n
            break
        good, n = n, 2 * n
    while bad - good > 1:  # the largest fitting size lies in [good, bad)
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good


def memory_fits(measure: Callable[[int], int], *, budget: int, extra: int) -> Callable[[int], bool]:
    """`fits(n)` for `probe_batch_size`: `measure(n)` (peak bytes of a pass over `n` items; may raise
    an out-of-memory error) plus `extra` bytes (optimizer state still to come) within `budget`."""

    def fits(n: int) -> bool:
        try:
            peak = measure(n)
        except torch.OutOfMemoryError as exc:
            LOG.info("auto batch size: %d item(s): out of memory (%s)", n, _first_line(exc))
            return False
        ok = peak + extra <= budget
        LOG.info(
            "auto batch size: %d item(s): peak %.2f GiB + optimizer state %.2f GiB %s budget %.2f GiB",
            n,
            peak / 2**30,
            extra / 2**30,
            "<=" if ok else ">",
            budget / 2**30,
        )
        return ok

    return fits


def cuda_peak_bytes(device: torch.device, run: Callable[[], None]) -> int:
    """Peak allocated CUDA memory of `run()` (out-of-memory errors propagate after the cache is freed)."""
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    try:
        run()
        torch.cuda.synchronize(device)
    finally:
        torch.cuda.empty_cache()
    return int(torch.cuda.max_memory_allocated(device))


def cuda_budget(device: torch.device, margin: float) -> int:
    """Bytes this process may use: (free + what it already holds) x (1 - margin)."""
    free, _total = torch.cuda.mem_get_info(device)
    return int((free + torch.cuda.memory_reserved(device)) * (1.0 - margin))


def optimizer_state_bytes(params: Sequence[nn.Parameter], per_param: int = 2) -> int:
    """Bytes an Adam-like optimizer allocates at its first update: `per_param` fp32 copies of every
    trainable parameter (AdamW, ScaledAdam: two moments)."""
    return per_param * sum(p.numel() * 4 for p in params if p.requires_grad)


def choose_batch_size(
    fit: BatchFit,
    device: torch.device,
    *,
    measure: Callable[[int], int] | None,
    extra: int = 0,
    budget: int | None = None,
    cap: int | None = None,
    ctx: DistContext | None = None,
) -> int:
    """Resolve `batch_size: auto` (a no-op when the size is already fixed) and log the choice.

    `measure(n)`: the stage's peak-memory measurement of a pass over its `n` longest items (CUDA only;
    None: not measured); `cap`: a lower cap of the stage (e.g. the GPT's official one) on top of
    `fit.cap`; under DDP every rank measures its own GPU and all take the smallest choice.
    """
    if fit.resolved:
        return fit.batch_size
    limit = min(fit.cap, cap) if cap is not None else fit.cap
    if measure is None:
        size = min(CPU_AUTO_BATCH, limit)
        LOG.info(
            "batch_size auto on %s: %d (memory is only measured on CUDA; %d = min(default %d, cap %d))",
            device.type,
            size,
            size,
            CPU_AUTO_BATCH,
            limit,
        )
        return fit.resolve(size, f"auto ({device.type}: default, not measured)")
    room = budget if budget is not None else cuda_budget(device, fit.margin)
    size = probe_batch_size(memory_fits(measure, budget=room, extra=extra), limit)
    if ctx is not None and ctx.distributed:
        size = min(int(x) for x in gather_objects(size, ctx))
    if size == 0:
        raise OutOfMemory(
            f"batch_size auto: not even one item of the longest bucket fits in {room / 2**30:.2f} GiB "
            f"(with train.auto_batch_margin {fit.margin}); use precision fp16/bf16, shorter clips, or a "
            "larger GPU"
        )
    LOG.info(
        "batch_size auto: %d (largest that fits the longest bucket, cap %d, %.0f%% of memory kept free)",
        size,
        limit,
        100 * fit.margin,
    )
    return fit.resolve(size, "auto (measured)")


# -------------------------------------------------------------------------------- state preservation
def torch_rng() -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The torch CPU generator state and, when CUDA is in use, the current CUDA device's (what a training
    pass consumes; other devices are not touched, so no CUDA context is created on them)."""
    cuda = [torch.cuda.get_rng_state()] if torch.cuda.is_initialized() else []
    return torch.get_rng_state(), cuda


def set_torch_rng(state: tuple[torch.Tensor, list[torch.Tensor]]) -> None:
    """Restore what `torch_rng` captured."""
    cpu, cuda = state
    torch.set_rng_state(cpu)
    for s in cuda:
        torch.cuda.set_rng_state(s)


@contextlib.contextmanager
def preserved_state(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Run trial passes that leave no trace: the torch RNG states, every module's buffers and train/eval
    flags are restored and every gradient is set to None afterwards (also after an error). Weights,
    optimizers and scalers are not touched by a pass without an update (tests check all of it)."""
    rng = torch_rng()
    buffers = [[b.detach().clone() for b in m.buffers()] for m in modules]
    modes = [[sub.training for sub in m.modules()] for m in modules]
    try:
        yield
    finally:
        set_torch_rng(rng)
        with torch.no_grad():
            for m, saved in zip(modules, buffers, strict=True):
                for b, copy in zip(m.buffers(), saved, strict=True):
                    b.copy_(copy)
        for m, flags in zip(modules, modes, strict=True):
            for sub, flag in zip(m.modules(), flags, strict=True):
                sub.training = flag
            for p in m.parameters():
                p.grad = None


def forget_unscale(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer | None = None) -> None:
    """After an out-of-memory error: drop the scaler's record that `optimizer` (None: every optimizer)
    was unscaled or stepped in this step, so that its redo may unscale again. An optimizer whose update
    was applied keeps its record (its overflow flag must reach `scaler.update()`)."""
    states: Any = getattr(scaler, "_per_optimizer_states", None)  # a disabled scaler keeps no records
    if states is None:
        return
    if optimizer is None:
        states.clear()
    else:
        states.pop(id(optimizer), None)
