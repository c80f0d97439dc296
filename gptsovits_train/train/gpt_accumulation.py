"""When the GPT optimizer steps: the official accumulation rule and the corrected one.

Official (`t2s_lightning_module.py: training_step`, facts §10): every batch is back-propagated and the
optimizer steps (then zeroes the gradients) only after batch `i` with `i > 0 and i % 4 == 0`. So the
first step of an epoch sums batches 0-4 (five), later ones four; the batches after the last step of an
epoch keep their gradients into the next epoch; with 4 or fewer batches per epoch it never steps and
the "trained" model is the pretrained one. Optimizer steps per epoch: `⌊(n − 1)/4⌋`.

Corrected (``"per_epoch"``): step after every `every` batches and after the last batch of the epoch,
so every epoch uses exactly its own batches (nothing carried over; what is validated at the end of an
epoch is what that epoch trained) and any non-empty epoch steps at least once. Steps per epoch:
`⌈n/every⌉`.

A plan under which the optimizer would never step is refused with a `GsvError` that says so.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

from gptsovits_train.errors import GsvError

LOG = logging.getLogger(__name__)

AccumulationMode = Literal["official", "per_epoch"]


@dataclass(frozen=True)
class AccumulationRule:
    """`mode` ("official" | "per_epoch") and `every` (batches per optimizer step; official 4)."""

    mode: AccumulationMode = "per_epoch"
    every: int = 4

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"accumulate_batches must be >= 1, got {self.every}")
        if self.mode not in ("official", "per_epoch"):
            raise ValueError(f"accumulation must be 'official' or 'per_epoch', got {self.mode!r}")

    def steps_after(self, batch_idx: int, n_batches: int) -> bool:
        """Whether the optimizer steps after batch `batch_idx` (0-based) of an epoch of `n_batches`."""
        if self.mode == "official":
            return batch_idx > 0 and batch_idx % self.every == 0
        return (batch_idx + 1) % self.every == 0 or batch_idx == n_batches - 1

    def steps_per_epoch(self, n_batches: int) -> int:
        if n_batches <= 0:
            return 0
        if self.mode == "official":
            return (n_batches - 1) // self.every
        return math.ceil(n_batches / self.every)

    @property
    def carries_gradients(self) -> bool:
        """True when gradients of an epoch's last batches flow into the next epoch's first step."""
        return self.mode == "official"

    def check(self, n_batches: int, batch_size: int) -> int:
        """Steps per epoch; raises `GsvError` when the optimizer would never step."""
        steps = self.steps_per_epoch(n_batches)
        if steps == 0:
            raise GsvError(
                f"gpt: with {n_batches} batch(es) per epoch (batch size {batch_size}) the official "
                f"accumulation rule never steps the optimizer (it needs at least {self.every + 1} "
                "batches: the official trainer would silently export the pretrained weights); set "
                "gpt.accumulation: per_epoch, or lower gpt.batch_size"
            )
        return steps
