"""Strict state-dict comparison and loading with a full report of what did not match.

`compare_state_dicts` lists missing, unexpected and shape-mismatched keys (and, on request, dtype
differences); `load_state_dict_strict` loads only when nothing is wrong except keys the caller
explicitly allows (glob patterns such as ``"enc_q.*"`` for official exports, which drop the posterior
encoder). There is no silent ``strict=False``: every tolerated key is named in the report and logged.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gptsovits_train.errors import CheckpointError

LOG = logging.getLogger(__name__)

#: Keys official exports leave out: every key containing "enc_q" (the posterior encoder).
EXPORT_DROPPED_PATTERNS: tuple[str, ...] = ("*enc_q*",)


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else None


@dataclass
class KeyReport:
    """Result of comparing a state dict against what a model expects.

    `missing`: expected keys absent from the file, `unexpected`: file keys the model does not have,
    `mismatched`: (key, expected shape, file shape), `allowed_missing`/`allowed_unexpected`: the
    subset of missing/unexpected keys the caller allowed (they are not errors).
    """

    n_expected: int
    n_given: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...] | None, tuple[int, ...] | None]] = field(default_factory=list)
    allowed_missing: list[str] = field(default_factory=list)
    allowed_unexpected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing/unexpected (beyond the allowed keys) and every shape matches."""
        return not (self.missing or self.unexpected or self.mismatched)

    @property
    def n_matched(self) -> int:
        return self.n_given - len(self.unexpected) - len(self.allowed_unexpected) - len(self.mismatched)

    def summary(self, limit: int = 5) -> str:
        """One line: counts plus the first `limit` offending keys of each kind."""

        def head(items: list[Any]) -> str:
            shown = ", ".join(str(i) for i in items[:limit])
            return shown + (f", ... (+{len(items) - limit})" if len(items) > limit else "")

        parts = [f"{self.n_matched}/{self.n_expected} keys match"]
        if self.missing:
            parts.append(f"{len(self.missing)} missing [{head(self.missing)}]")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected [{head(self.unexpected)}]")
        if self.mismatched:
            shown = [
                f"{k}: model {tuple(a) if a else a} vs file {tuple(b) if b else b}"
                for k, a, b in self.mismatched
            ]
            parts.append(f"{len(self.mismatched)} shape mismatches [{head(shown)}]")
        if self.allowed_missing:
            parts.append(f"{len(self.allowed_missing)} allowed missing")
        if self.allowed_unexpected:
            parts.append(f"{len(self.allowed_unexpected)} allowed unexpected")
        return "; ".join(parts)

    def raise_if_bad(self, what: str = "state dict") -> None:
        """Raise `CheckpointError` with `summary()` unless `ok`."""
        if not self.ok:
            raise CheckpointError(f"{what} does not match the model: {self.summary()}")


def compare_state_dicts(
    expected: Mapping[str, Any],
    given: Mapping[str, Any],
    *,
    allow_missing: Iterable[str] = (),
    allow_unexpected: Iterable[str] = (),
) -> KeyReport:
    """Compare `given` (from a file) with `expected` (a model's state dict, or key -> shape).

    Values may be tensors (or anything with `.shape`) or plain shape tuples/lists.
    `allow_missing`/`allow_unexpected` are glob patterns (``fnmatch``, e.g. ``"enc_q.*"``).
    """
    allow_missing = tuple(allow_missing)
    allow_unexpected = tuple(allow_unexpected)

    def as_shape(v: Any) -> tuple[int, ...] | None:
        if isinstance(v, list | tuple) and all(isinstance(i, int) for i in v):
            return tuple(v)
        return _shape(v)

    report = KeyReport(n_expected=len(expected), n_given=len(given))
    for key, ref in expected.items():
        if key not in given:
            (report.allowed_missing if _matches(key, allow_missing) else report.missing).append(key)
            continue
        a, b = as_shape(ref), as_shape(given[key])
        if a != b:
            report.mismatched.append((key, a, b))
    for key in given:
        if key not in expected:
            (report.allowed_unexpected if _matches(key, allow_unexpected) else report.unexpected).append(key)
    return report


def load_state_dict_strict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    allow_missing: Iterable[str] = (),
    allow_unexpected: Iterable[str] = (),
    what: str = "checkpoint",
) -> KeyReport:
    """Load `state` into `module`, failing on any key/shape problem not covered by the allowed patterns.

    Tensors are cast to the module's dtypes (fp16 exports load into an fp32 model). Allowed missing
    keys keep the module's current values and are logged; the returned report names them.
    """
    own = module.state_dict()
    report = compare_state_dicts(own, state, allow_missing=allow_missing, allow_unexpected=allow_unexpected)
    report.raise_if_bad(what)
    to_load = {k: v for k, v in state.items() if k in own}
    result = module.load_state_dict(to_load, strict=False)
    # compare_state_dicts already proved these sets; re-check what torch itself reports.
    leftover = set(result.missing_keys) - set(report.allowed_missing)
    if leftover or result.unexpected_keys:
        raise CheckpointError(
            f"{what}: torch reported missing {sorted(leftover)[:5]} / unexpected {result.unexpected_keys[:5]}"
        )
    if report.allowed_missing:
        LOG.info(
            "%s: %d allowed keys absent (kept model values), e.g. %s",
            what,
            len(report.allowed_missing),
            report.allowed_missing[0],
        )
    return report
