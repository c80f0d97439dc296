"""Clipping detection: how much of a waveform sits in flat runs at its extreme level.

A clipped recording holds runs of consecutive samples at one level (the converter's full scale, or the
ceiling of an earlier gain stage): the flat tops of the waveform. Such a sample is counted when its
magnitude equals a clipping level (within a relative 1e-4) and it belongs to a run of at least
`MIN_RUN` consecutive such samples. The levels are the file's peak, and also 1.0 when the peak is above
it (a float file clipped at full scale and then pushed further by some later sample). An unclipped
signal reaches its peak in isolated samples, so its share is (near) zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Consecutive samples at a clipping level that count as a flat top.
MIN_RUN = 3
#: Relative tolerance of "at the level".
LEVEL_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Clipping:
    """`share`: fraction of the samples in flat runs at `level` (the highest clipping level found)."""

    share: float
    level: float


def _in_long_runs(mask: np.ndarray, min_run: int) -> int:
    """Number of True elements of (L,) `mask` that belong to runs of at least `min_run` Trues."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    lengths = ends - starts
    return int(lengths[lengths >= min_run].sum())


def detect_clipping(samples: np.ndarray, min_run: int = MIN_RUN) -> Clipping:
    """Flat-top share of a (L,) waveform (a mono mix or one channel), in [0, 1]."""
    mag = np.abs(samples.astype(np.float32, copy=False))
    if mag.size == 0:
        return Clipping(0.0, 0.0)
    top = float(mag.max())
    if top == 0.0:
        return Clipping(0.0, 0.0)
    levels = [top, 1.0] if top > 1.0 else [top]
    at_level = np.zeros(mag.shape, dtype=bool)
    for level in levels:
        at_level |= np.abs(mag - np.float32(level)) <= np.float32(level * LEVEL_TOLERANCE)
    share = _in_long_runs(at_level, min_run) / mag.size
    level = min(levels) if share > 0 and top > 1.0 else top
    return Clipping(share, level)
