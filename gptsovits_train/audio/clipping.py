"""Clipping detection: how much of a waveform sits in flat runs at its extreme level.

A clipped recording holds runs of consecutive samples at one level (the converter's full scale, or the
ceiling of an earlier gain stage): the flat tops of the waveform. Such a sample is counted when its
magnitude equals a clipping level (within a relative 1e-4) and it belongs to a run of at least
`MIN_RUN` consecutive such samples. The levels are the file's peak, and also 1.0 when the peak is above
it (a float file clipped at full scale and then pushed further by some later sample). An unclipped
signal reaches its peak in isolated samples, so its share is (near) zero.

`detect_clipping` takes the whole waveform; `ClippingCounter` gives the identical answer for one that
arrives block by block (a long recording decoded by `audio.stream.decode_to_spill`), holding only the
samples near the running top.
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


def _near(mag: np.ndarray, level: float) -> np.ndarray:
    """Which of the float32 magnitudes in `mag` (any shape) lie at `level` within the relative tolerance.

    The arithmetic is float32 throughout (the level and the tolerance rounded to float32), so the streamed
    counter and `detect_clipping` test every sample with the same booleans.
    """
    return np.abs(mag - np.float32(level)) <= np.float32(level * LEVEL_TOLERANCE)


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
        at_level |= _near(mag, level)
    share = _in_long_runs(at_level, min_run) / mag.size
    level = min(levels) if share > 0 and top > 1.0 else top
    return Clipping(share, level)


_NO_POSITIONS = np.zeros(0, dtype=np.int64)
_NO_POSITIONS.setflags(write=False)


def _stretches(idx: np.ndarray, split: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """First and last indices into sorted (k,) `idx` (k ≥ 1) of its runs of consecutive positions.

    `split` ((k-1,) bool) also cuts between ``idx[i]`` and ``idx[i+1]`` where it is True. Returns two (r,)
    int arrays.
    """
    breaks = np.diff(idx) != 1
    if split is not None:
        breaks |= split
    cut = np.flatnonzero(breaks)
    return np.concatenate(([0], cut + 1)), np.concatenate((cut, [idx.size - 1]))


def _long_total(starts: np.ndarray, ends: np.ndarray, min_run: int) -> int:
    """Samples in runs of at least `min_run` of the union of the half-open spans ``[starts, ends)``.

    The (r,) spans may overlap, touch and come in any order; touching spans form one run.
    """
    if starts.size == 0:
        return 0
    order = np.argsort(starts, kind="stable")
    first_pos, reach = starts[order], np.maximum.accumulate(ends[order])
    opens = np.ones(first_pos.size, dtype=bool)
    opens[1:] = first_pos[1:] > reach[:-1]
    firsts = np.flatnonzero(opens)
    lasts = np.concatenate((firsts[1:] - 1, [first_pos.size - 1]))
    lengths = reach[lasts] - first_pos[firsts]
    return int(lengths[lengths >= min_run].sum())


def _touching(
    starts: np.ndarray, ends: np.ndarray, span_starts: np.ndarray, span_ends: np.ndarray
) -> np.ndarray:
    """(r,) bool: which spans ``[starts, ends)`` overlap or touch one of the sorted disjoint spans
    ``[span_starts, span_ends)`` (they share a position or one ends where the other begins)."""
    if span_starts.size == 0:
        return np.zeros(starts.shape, dtype=bool)
    last_before = np.searchsorted(span_starts, ends, side="right") - 1
    reach = np.where(last_before >= 0, span_ends[np.maximum(last_before, 0)], -1)
    return reach >= starts


def _push(chunks: list[tuple[np.ndarray, ...]], chunk: tuple[np.ndarray, ...]) -> None:
    """Append `chunk` (parallel arrays) to `chunks`, merging equal-or-larger tails so that the list keeps
    O(log n) chunks and each element is copied O(log n) times."""
    chunks.append(chunk)
    while len(chunks) > 1 and chunks[-1][0].size >= chunks[-2][0].size:
        tail = chunks.pop()
        chunks[-1] = tuple(np.concatenate(pair) for pair in zip(chunks[-1], tail, strict=True))


def _joined(chunks: list[tuple[np.ndarray, ...]], width: int) -> tuple[np.ndarray, ...]:
    """The parallel arrays of all `chunks` end to end (`width` arrays; empty ones when there are none)."""
    if not chunks:
        return tuple(_NO_POSITIONS for _ in range(width))
    if len(chunks) > 1:
        chunks[:] = [tuple(np.concatenate(parts) for parts in zip(*chunks, strict=True))]
    return chunks[0]


class ClippingCounter:
    """`detect_clipping` over a waveform that arrives block by block, with the identical result.

    Feed the (n,) blocks in order to `update` (any n ≥ 0); `result()` then equals
    ``detect_clipping(np.concatenate(blocks))`` exactly (share and level) for any split of the signal.
    Every sample is tested with the same float32 arithmetic (`_near`).

    The global top is known only at the end, so the counter keeps what the answer can depend on:

    - the near-top spans: maximal stretches of consecutive equal magnitudes within the tolerance of the
      running maximum (position, end, value). When the maximum rises they are tested again and the ones
      out of the new band dropped: a magnitude outside the band of a maximum is outside the band of every
      higher one (in float32 too: the difference is exact near the level and grows by at least one ulp of
      the level while the tolerance grows by about 1e-4 of that), so the held spans are always exactly
      the band of the running maximum.
    - for the fixed level 1.0 (used only when the top ends above 1.0): the run open at the end of the last
      block, the count of samples in finished long runs that neither overlap nor touch a held near-top
      span (they can never join one: held spans only shrink), and the finished runs that do touch one
      (their union with the near-top spans is counted at the end; they are folded into the count when a
      rise of the maximum leaves them alone).

    Memory: about 20 bytes per held span, i.e. per stretch of equal samples within 1e-4 of the running
    top (plus per 1.0-level run touching one), in O(log) chunks; `spans_held()` reports the count. That
    does not grow with the recording for ordinary audio, whose peak is reached in a few isolated samples
    (1 span held for an hour of the speech-like signal of scripts/bench_clipping.py); it grows with the
    number of flat runs in a clipped one (367k spans, about 7 MB, for an hour with 2 % of its samples in
    flat runs), and with the samples that happen to lie within 1e-4 of the top in a signal as flat as
    white noise. Time: two passes over each block (abs, max), plus a few only for the blocks that reach
    the band of the running top or of 1.0. `result()` answers for the samples fed so far and may be
    called at any point. A NaN anywhere gives ``Clipping(0.0, nan)`` and an infinite magnitude makes
    every finite sample count, as in `detect_clipping`.
    """

    def __init__(self, min_run: int = MIN_RUN) -> None:
        self.min_run = min_run
        self._seen = 0
        self._top = np.float32(0.0)
        self._nan = False
        self._infinite = False
        # near-top spans: chunks of (starts, ends, values), sorted, disjoint
        self._near_top: list[tuple[np.ndarray, ...]] = []
        # finished runs at 1.0 touching a near-top span: chunks of (starts, ends)
        self._unit_runs: list[tuple[np.ndarray, ...]] = []
        # start of the run (at 1.0, or of finite samples once the top is infinite) open after the last block
        self._open: int | None = None
        # samples in finished long runs that no later sample can join or split
        self._settled = 0

    def spans_held(self) -> int:
        """Number of spans held (near-top plus 1.0-level runs), the measure of the counter's memory."""
        return sum(chunk[0].size for chunk in self._near_top + self._unit_runs)

    def update(self, block: np.ndarray) -> None:
        """Add the next (n,) block of the waveform (float32, or anything `astype(float32)` takes)."""
        block = np.asarray(block)
        if block.ndim != 1:
            raise ValueError(f"ClippingCounter.update takes a (n,) block, got shape {block.shape}")
        mag = np.abs(block.astype(np.float32, copy=False))
        base = self._seen
        self._seen += mag.size
        if mag.size == 0 or self._nan:
            return
        peak = mag.max()
        if np.isnan(peak):
            self._nan, self._near_top, self._unit_runs = True, [], []
            return
        if self._infinite or np.isinf(peak):
            self._update_infinite(mag, base)
            return
        if peak > self._top:
            self._top = peak
            self._drop_below_top()
        if self._top == 0.0:
            return
        level = float(self._top)
        peak_arr = np.array([peak])
        before = self._last_near_top()
        new_starts, new_ends = _NO_POSITIONS, _NO_POSITIONS
        if _near(peak_arr, level)[0]:  # no magnitude of the block is nearer the top than its peak
            new_starts, new_ends = self._add_near_top(mag, base, level)
        if self._open is not None or peak >= 1.0 or _near(peak_arr, 1.0)[0]:
            unit = np.flatnonzero(_near(mag, 1.0))
            starts, ends = self._continue_runs(unit, base, mag.size)
            if starts.size:
                touch = _touching(
                    starts,
                    ends,
                    np.concatenate((before[0], new_starts)),
                    np.concatenate((before[1], new_ends)),
                )
                self._settled += _long_total(starts[~touch], ends[~touch], self.min_run)
                if touch.any():
                    _push(self._unit_runs, (starts[touch], ends[touch]))

    @property
    def top(self) -> float:
        """The largest magnitude fed so far (0.0 before any sample)."""
        return float(self._top)

    def result(self) -> Clipping:
        """The clipping of everything fed so far (equal to `detect_clipping` on the concatenation)."""
        if self._seen == 0:
            return Clipping(0.0, 0.0)
        if self._nan:
            return Clipping(0.0, float("nan"))
        top = float(self._top)
        if top == 0.0:
            return Clipping(0.0, 0.0)
        share = self.flat_count() / self._seen
        return Clipping(share, 1.0 if share > 0 and top > 1.0 else top)

    def flat_count(self) -> int:
        """How many samples fed so far lie in flat runs at a clipping level (`result().share` times the
        samples fed; 0 with a NaN or before any nonzero sample)."""
        top = float(self._top)
        if self._seen == 0 or self._nan or top == 0.0:
            return 0
        open_starts = _NO_POSITIONS if self._open is None else np.array([self._open], dtype=np.int64)
        open_ends = np.full(open_starts.shape, self._seen, dtype=np.int64)
        if self._infinite:  # every finite magnitude is within the (infinite) tolerance of the top
            count = self._settled + _long_total(open_starts, open_ends, self.min_run)
        elif top > 1.0:  # the union of the two levels' bands
            near_starts, near_ends, _ = _joined(self._near_top, 3)
            unit_starts, unit_ends = _joined(self._unit_runs, 2)
            count = self._settled + _long_total(
                np.concatenate((near_starts, unit_starts, open_starts)),
                np.concatenate((near_ends, unit_ends, open_ends)),
                self.min_run,
            )
        else:
            near_starts, near_ends, _ = _joined(self._near_top, 3)
            count = _long_total(near_starts, near_ends, self.min_run)
        return count

    def _last_near_top(self) -> tuple[np.ndarray, np.ndarray]:
        """The (1,) start and end of the last held near-top span, or empty arrays."""
        if not self._near_top:
            return _NO_POSITIONS, _NO_POSITIONS
        starts, ends, _ = self._near_top[-1]
        return starts[-1:].copy(), ends[-1:].copy()

    def _add_near_top(self, mag: np.ndarray, base: int, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Hold the block's spans in the band of `level`; returns their (r,) starts and ends."""
        idx = np.flatnonzero(_near(mag, level))
        values = mag[idx]
        first, last = _stretches(idx, np.diff(values) != 0)
        starts, ends, values = idx[first] + base, idx[last] + 1 + base, values[first]
        block_starts, block_ends = starts, ends
        if self._near_top:  # a flat stretch carried over the block edge stays one span
            _, held_ends, held_values = self._near_top[-1]
            if held_ends[-1] == starts[0] and held_values[-1] == values[0]:
                held_ends[-1] = ends[0]
                starts, ends, values = starts[1:], ends[1:], values[1:]
        if starts.size:
            _push(self._near_top, (starts, ends, values))
        return block_starts, block_ends

    def _drop_below_top(self) -> None:
        """After a rise of the running top: drop the near-top spans out of its band, and settle the held
        1.0-level runs that no longer touch a near-top span."""
        starts, ends, values = _joined(self._near_top, 3)
        keep = _near(values, float(self._top))
        self._near_top = [(starts[keep], ends[keep], values[keep])] if keep.any() else []
        unit_starts, unit_ends = _joined(self._unit_runs, 2)
        touch = _touching(unit_starts, unit_ends, starts[keep], ends[keep])
        self._settled += _long_total(unit_starts[~touch], unit_ends[~touch], self.min_run)
        self._unit_runs = [(unit_starts[touch], unit_ends[touch])] if touch.any() else []

    def _continue_runs(self, idx: np.ndarray, base: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Runs of a fixed mask given its True positions `idx` in a block of `n` samples at `base`.

        Joins the run open after the last block to one starting the block, keeps one reaching the block's
        end open, and returns the (r,) absolute starts and ends of the runs finished in this block.
        """
        if idx.size:
            first, last = _stretches(idx)
            starts, ends = idx[first] + base, idx[last] + 1 + base
        else:
            starts, ends = _NO_POSITIONS, _NO_POSITIONS
        if self._open is not None:
            if starts.size and starts[0] == base:
                starts = np.concatenate(([self._open], starts[1:]))
            else:
                starts = np.concatenate(([self._open], starts))
                ends = np.concatenate(([base], ends))
        self._open = None
        if ends.size and ends[-1] == base + n:
            self._open = int(starts[-1])
            starts, ends = starts[:-1], ends[:-1]
        return starts, ends

    def _update_infinite(self, mag: np.ndarray, base: int) -> None:
        """Count runs of finite samples: the whole answer once the top is infinite."""
        if not self._infinite:  # everything before this block was finite: one open run
            self._infinite, self._top = True, np.float32(np.inf)
            self._near_top, self._unit_runs, self._settled = [], [], 0
            self._open = 0 if base > 0 else None
        starts, ends = self._continue_runs(np.flatnonzero(~np.isinf(mag)), base, mag.size)
        self._settled += _long_total(starts, ends, self.min_run)
