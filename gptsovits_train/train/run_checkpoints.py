"""Run checkpoints: the `last.pt`, `best.pt` and top-k `epoch_XXXX.pt` files of a run folder.

(Not to be confused with the `checkpoints/` package, which reads and writes weight-file *formats*: official
exports, pretrained files, and these run checkpoints when `export-best`/`inspect` read them.)

A run checkpoint is a plain `torch.save` dict loadable with `torch.load(..., weights_only=True)`: the common
part written by the engine (`training_state.training_state`: format tag, tool version, stage name, epoch,
step, metrics, `best`, `top_k`, monitor (`early_stopping`), RNG states, run progress, the resolved config)
plus what the stage adds (SoVITS: generator/discriminator state dicts in fp32, optimizers, grad scaler,
schedules).

`RunCheckpoints` keeps, in the Lightning `ModelCheckpoint` style:

- `last.pt` on every save (the resume point),
- `best.pt` when the monitor's verdict says the validation improved (`monitor.ValidationMonitor`: the one
  owner of "best"),
- the `top_k` best-scoring epochs as `epoch_XXXX.pt`, tracked as `{file name: score}`; a file pushed out of
  the top-k is deleted only after the new file is in place. NaN/Inf scores never rank.

Each save serialises the state once and hard-links it to every target name (falling back to a copy where the
file system has no hard links), so saving best + last + an epoch file costs one write. Every name is
replaced atomically (temporary name + rename). A state whose model weights contain NaN/Inf is never written
at all.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from gptsovits_train.checkpoints.files import RUN_CHECKPOINT_FORMAT, RUN_CHECKPOINT_FORMAT_VERSION
from gptsovits_train.errors import CheckpointError
from gptsovits_train.fileio import atomic_path, atomic_torch_save
from gptsovits_train.layout import RunLayout
from gptsovits_train.train.monitor import Verdict

LOG = logging.getLogger(__name__)

#: The format tag and version of a run checkpoint (defined once, beside the readers in `checkpoints/`).
CHECKPOINT_FORMAT = RUN_CHECKPOINT_FORMAT
CHECKPOINT_FORMAT_VERSION = RUN_CHECKPOINT_FORMAT_VERSION
#: Where the weights of a checkpoint written before the stage name was stored live (SoVITS).
LEGACY_WEIGHT_KEYS = ("generator", "discriminator")


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
    """What one `RunCheckpoints.save` call did."""

    written: list[Path] = field(default_factory=list)
    evicted: list[Path] = field(default_factory=list)
    is_best: bool = False
    skipped: str | None = None  # why nothing was written


class RunCheckpoints:
    """Best / last / top-k checkpoints of one run folder.

    Args:
        layout: the run folder.
        weight_keys: the keys of a state that hold model weights (never written when not finite).
        top_k: how many `epoch_XXXX.pt` files to keep (0: none; best.pt and last.pt are always kept).
        mode: "min" (lower score ranks higher) or "max".
        write: whether this process writes files (False on DDP ranks other than 0: the bookkeeping still
            runs, so every rank agrees on what is kept).
    """

    def __init__(
        self,
        layout: RunLayout,
        *,
        weight_keys: tuple[str, ...] = LEGACY_WEIGHT_KEYS,
        top_k: int = 3,
        mode: Literal["min", "max"] = "min",
        write: bool = True,
    ) -> None:
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.layout = layout
        self.weight_keys = weight_keys
        self.top_k = top_k
        self.mode = mode
        self.write = write
        self.best_k: dict[str, float] = {}  # file name inside ckpt_dir -> score

    # ------------------------------------------------------------------------------------------- queries
    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    @property
    def best_k_models(self) -> dict[Path, float]:
        """`{path: score}` of the kept epoch checkpoints."""
        return {self.layout.ckpt_dir / name: score for name, score in self.best_k.items()}

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

    def unsaveable(self, state: dict[str, Any]) -> str | None:
        """Why `state` must not be written (its weights hold NaN/Inf: names the first such tensor)."""
        bad = first_nonfinite({k: state.get(k) for k in self.weight_keys})
        return None if bad is None else f"weights are not finite ({bad})"

    # ---------------------------------------------------------------------------------------------- save
    def save(self, state: dict[str, Any], verdict: Verdict | None, *, epoch: int, step: int) -> SaveOutcome:
        """Save `state` as last (always), best (when `verdict.improved`) and top-k (if its score ranks).

        `state` must hold the weights named by `weight_keys`; this method fills in its `top_k` record.
        `verdict=None` (no validation this time, e.g. an interrupted epoch) writes last only.
        """
        bad = self.unsaveable(state)
        if bad is not None:
            reason = f"{bad}; epoch {epoch} step {step} was not saved"
            LOG.error("checkpoint skipped: %s", reason)
            return SaveOutcome(skipped=reason)

        outcome = SaveOutcome()
        names = [self.layout.last.name]
        evict: list[str] = []
        if verdict is not None and verdict.improved:
            outcome.is_best = True
            names.append(self.layout.best.name)
        if verdict is not None and math.isfinite(verdict.value) and self.top_k > 0:
            score = float(verdict.value)
            name = self.layout.epoch_ckpt(epoch).name
            worst = self.kth_best()
            if len(self.best_k) < self.top_k or name in self.best_k:
                self.best_k[name] = score
                names.append(name)
            elif worst is not None and self._better(score, worst[1]):
                self.best_k[name] = score
                names.append(name)
                del self.best_k[worst[0]]
                evict.append(worst[0])
        elif verdict is not None and not math.isfinite(verdict.value):
            LOG.warning("the monitored metric is %s: epoch %d saved as last only", verdict.value, epoch)

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
        return {"top_k": self.top_k, "mode": self.mode, "best_k": dict(self.best_k)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the top-k bookkeeping (older states also hold a `best` record: the monitor owns it now)."""
        self.best_k = {str(k): float(v) for k, v in state["best_k"].items()}
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


def load_run_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a run checkpoint safely (`weights_only=True`) and check its format tag.

    A checkpoint without a `stage` entry (written before the engine served several stages) is a SoVITS one.

    Raises:
        CheckpointError: the file is missing, unreadable, or not a gsv-train checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a gsv-train run checkpoint (no format tag {CHECKPOINT_FORMAT!r})")
    version = state.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is not supported "
            f"(expected {CHECKPOINT_FORMAT_VERSION})"
        )
    state.setdefault("stage", "sovits")
    missing = [k for k in ("epoch", "step") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return state
