"""Run checkpoints: `last.pt`, `best.pt` and the top-k `epoch_XXXX.pt` files of a run folder.

A checkpoint is a plain `torch.save` dict loadable with `torch.load(..., weights_only=True)` (the contract in
the README/brief): format tag, tool version, generator/discriminator state dicts (fp32), optimizers, grad
scaler, schedulers, early stopping, RNG states, epoch, step, metrics, `best`, and the resolved config.

`CheckpointManager` keeps, in the Lightning `ModelCheckpoint` style:

- `last.pt` on every save (the resume point),
- `best.pt` whenever the monitored score improves (strictly; NaN/Inf is never best),
- the `top_k` best epochs as `epoch_XXXX.pt`, tracked as `{file name: score}`; a file pushed out of the
  top-k is deleted only after the new file is in place.

Each save serialises the state once and hard-links it to every target name (falling back to a copy where the
file system has no hard links), so saving best + last + an epoch file costs one write. Every name is
replaced atomically (temporary name + rename). A state whose generator or discriminator weights contain
NaN/Inf is never written at all.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from gptsovits_train.checkpoints.serialization import load_torch_file
from gptsovits_train.errors import CheckpointError
from gptsovits_train.fileio import atomic_path, atomic_torch_save
from gptsovits_train.layout import RunLayout

LOG = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "gsv-train-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
WEIGHT_KEYS = ("generator", "discriminator")


def first_nonfinite(state_dicts: dict[str, Any]) -> str | None:
    """Name of the first floating tensor holding NaN/Inf in `{"generator": sd, ...}`, or None."""
    names: list[str] = []
    peaks: list[torch.Tensor] = []
    for part, sd in state_dicts.items():
        if not isinstance(sd, dict):
            continue
        for name, tensor in sd.items():
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.numel() > 0:
                names.append(f"{part}.{name}")
                # max |x| is NaN/Inf exactly when some element is (a reduction, no per-element mask)
                peaks.append(torch.linalg.vector_norm(tensor.detach(), ord=math.inf).float().cpu())
    if not peaks:
        return None
    finite = torch.isfinite(torch.stack(peaks))
    if bool(finite.all()):
        return None
    return names[int((~finite).nonzero()[0, 0])]


@dataclass
class SaveOutcome:
    """What one `CheckpointManager.save` call did."""

    written: list[Path] = field(default_factory=list)
    evicted: list[Path] = field(default_factory=list)
    is_best: bool = False
    skipped: str | None = None  # why nothing was written


class CheckpointManager:
    """Best / last / top-k checkpoints of one run folder.

    Args:
        layout: the run folder.
        top_k: how many `epoch_XXXX.pt` files to keep (0: none; best.pt and last.pt are always kept).
        monitor: metric name stored in the `best` record.
        mode: "min" (lower score is better) or "max".
        write: whether this process writes files (False on DDP ranks other than 0: the bookkeeping still
            runs, so every rank agrees on what is best).
    """

    def __init__(
        self,
        layout: RunLayout,
        *,
        top_k: int = 3,
        monitor: str = "val/mel",
        mode: Literal["min", "max"] = "min",
        write: bool = True,
    ) -> None:
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.layout = layout
        self.top_k = top_k
        self.monitor = monitor
        self.mode = mode
        self.write = write
        self.best_k: dict[str, float] = {}  # file name inside ckpt_dir -> score
        self.best: dict[str, Any] | None = None  # {"epoch", "step", "metric", "value"}

    # ------------------------------------------------------------------------------------------- queries
    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    @property
    def best_k_models(self) -> dict[Path, float]:
        """`{path: score}` of the kept epoch checkpoints."""
        return {self.layout.ckpt_dir / name: score for name, score in self.best_k.items()}

    @property
    def best_value(self) -> float | None:
        return None if self.best is None else float(self.best["value"])

    @property
    def best_epoch(self) -> int | None:
        return None if self.best is None else int(self.best["epoch"])

    def kth_best(self) -> tuple[str, float] | None:
        """The kept epoch file with the worst score (the next one to be evicted)."""
        if not self.best_k:
            return None
        name = (
            max(self.best_k, key=self.best_k.__getitem__)
            if self.mode == "min"
            else min(self.best_k, key=self.best_k.__getitem__)
        )
        return name, self.best_k[name]

    # ---------------------------------------------------------------------------------------------- save
    def save(self, state: dict[str, Any], *, epoch: int, step: int, score: float | None) -> SaveOutcome:
        """Save `state` as last (always), best (if `score` improves) and top-k (if it ranks).

        `state` must hold at least "generator" and "discriminator"; this method fills in its `best` and
        `top_k` records. `score=None` (no validation this time, e.g. an interrupted epoch) writes last only.
        """
        bad = first_nonfinite({k: state.get(k) for k in WEIGHT_KEYS})
        if bad is not None:
            reason = f"weights are not finite ({bad}); epoch {epoch} step {step} was not saved"
            LOG.error("checkpoint skipped: %s", reason)
            return SaveOutcome(skipped=reason)

        outcome = SaveOutcome()
        names = [self.layout.last.name]
        evict: list[str] = []
        if score is not None and math.isfinite(score):
            if self.best is None or self._better(score, float(self.best["value"])):
                self.best = {"epoch": epoch, "step": step, "metric": self.monitor, "value": float(score)}
                outcome.is_best = True
                names.append(self.layout.best.name)
            if self.top_k > 0:
                name = self.layout.epoch_ckpt(epoch).name
                worst = self.kth_best()
                if len(self.best_k) < self.top_k or name in self.best_k:
                    self.best_k[name] = float(score)
                    names.append(name)
                elif worst is not None and self._better(score, worst[1]):
                    self.best_k[name] = float(score)
                    names.append(name)
                    del self.best_k[worst[0]]
                    evict.append(worst[0])
        elif score is not None:
            LOG.warning("%s = %s is not finite: epoch %d saved as last only", self.monitor, score, epoch)

        state["best"] = dict(self.best) if self.best is not None else None
        state["top_k"] = self.state_dict()
        if self.write:
            outcome.written = self._write(state, names)
            for name in evict:
                path = self.layout.ckpt_dir / name
                path.unlink(missing_ok=True)
                outcome.evicted.append(path)
                LOG.debug("evicted %s from the top-%d", path, self.top_k)
        return outcome

    def _write(self, state: dict[str, Any], names: list[str]) -> list[Path]:
        ckpt_dir = self.layout.ckpt_dir
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        staging = ckpt_dir / f".staging-{os.getpid()}.pt"
        atomic_torch_save(staging, state)
        written = []
        try:
            for name in names:
                target = ckpt_dir / name
                with atomic_path(target) as tmp:
                    tmp.unlink()
                    try:
                        os.link(staging, tmp)
                    except OSError as exc:  # no hard links on this file system: copy instead
                        LOG.debug("hard link %s -> %s failed (%s); copying", staging, tmp, exc)
                        shutil.copyfile(staging, tmp)
                written.append(target)
        finally:
            staging.unlink(missing_ok=True)
        return written

    # --------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "top_k": self.top_k,
            "mode": self.mode,
            "monitor": self.monitor,
            "best_k": dict(self.best_k),
            "best": dict(self.best) if self.best is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_k = {str(k): float(v) for k, v in state["best_k"].items()}
        self.best = dict(state["best"]) if state["best"] is not None else None
        # Files listed in the state but gone from disk are forgotten (they can no longer be restored).
        if self.write:
            for name in list(self.best_k):
                if not (self.layout.ckpt_dir / name).is_file():
                    LOG.warning("top-k checkpoint %s is missing; forgetting it", name)
                    del self.best_k[name]
        while len(self.best_k) > self.top_k:  # top_k lowered since the checkpoint
            worst = self.kth_best()
            assert worst is not None
            del self.best_k[worst[0]]
            if self.write:
                (self.layout.ckpt_dir / worst[0]).unlink(missing_ok=True)


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load a run checkpoint with the safe loader (`checkpoints.serialization`, tensors on the CPU) and
    check its format tag.

    Raises:
        CheckpointError: the file is missing, corrupt, refused by the safe loader (one line, in our words),
            or not a gsv-train checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    state = load_torch_file(path)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a gsv-train run checkpoint (no format tag {CHECKPOINT_FORMAT!r})")
    version = state.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is not supported "
            f"(expected {CHECKPOINT_FORMAT_VERSION})"
        )
    missing = [k for k in (*WEIGHT_KEYS, "epoch", "step") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return state
