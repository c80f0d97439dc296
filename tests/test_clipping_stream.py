"""`ClippingCounter`: the block-wise clipping detector gives exactly `detect_clipping` of the concatenation.

Every comparison is against `detect_clipping` on the whole signal (the independent whole-file reference),
with `==` on share and level; a few cases are also checked against hand-computed values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gptsovits_train.audio.clipping import Clipping, ClippingCounter, detect_clipping


def streamed(blocks: list[np.ndarray]) -> ClippingCounter:
    counter = ClippingCounter()
    for block in blocks:
        counter.update(block)
    return counter


def split_at(x: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """`x` cut into consecutive blocks of `sizes` (0 gives an empty block), the rest as a last block."""
    cuts = np.cumsum(sizes)
    assert cuts[-1] <= x.size
    return np.split(x, cuts)


def random_split(x: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Blocks of 0, 1, 2, a few or many samples, drawn at random."""
    sizes = ((0, 3), (0, 3), (3, 9), (9, 400))
    edges: list[int] = []
    end = 0
    while True:
        end += int(rng.integers(*sizes[int(rng.integers(0, 4))]))
        if end >= x.size:
            return np.split(x, edges)
        edges.append(end)


def assert_same(got: Clipping, x: np.ndarray) -> None:
    want = detect_clipping(x)
    assert got.share == want.share, (got, want)
    assert got.level == want.level or (math.isnan(got.level) and math.isnan(want.level)), (got, want)


def assert_streams_like_whole(x: np.ndarray, rng: np.random.Generator, splits: int = 4) -> None:
    for _ in range(splits):
        assert_same(streamed(random_split(x, rng)).result(), x)
    counter, fed = ClippingCounter(), 0
    for block in random_split(x[:300], rng):  # asked after every block: the answer for the samples so far
        counter.update(block)
        fed += block.size
        assert_same(counter.result(), x[:fed])
    assert_same(streamed(list(x.reshape(-1, 1))).result(), x)  # one sample per block


def flat_signal(rng: np.random.Generator, n: int, levels: list[float]) -> np.ndarray:
    """Samples drawn from a few magnitudes (with random signs), so that flat runs at them are frequent."""
    mags = rng.choice(np.array(levels, dtype=np.float32), n)
    return (mags * rng.choice(np.array([-1, 1], dtype=np.float32), n)).astype(np.float32)


# ---------------------------------------------------------------------------------------- random signals
@pytest.mark.parametrize("seed", range(6))
def test_random_signals_at_random_block_edges(seed):
    rng = np.random.default_rng(seed)
    for n in (0, 1, 2, 3, 7, 50, 300, 2000):
        assert_streams_like_whole(rng.uniform(-1, 1, n).astype(np.float32), rng)
        assert_streams_like_whole(flat_signal(rng, n, [0.2, 0.7, 0.69995, 0.7]), rng)
        # both levels of a float file: top above 1.0 and runs at 1.0, near one another or apart
        assert_streams_like_whole(flat_signal(rng, n, [1.0, 1.0, 1.00005, 0.99995, 1.0002, 1.3, 0.4]), rng)


def test_quiet_and_denormal_levels():
    rng = np.random.default_rng(7)
    tiny = float(np.float32(1e-45))  # the smallest denormal: the tolerance of such a level rounds to 0
    for levels in ([tiny, 2 * tiny, 3 * tiny], [1e-40, 1.00001e-40, 0.0], [1e-30, 0.99995e-30, 5e-31]):
        for _ in range(5):
            assert_streams_like_whole(flat_signal(rng, 400, levels), rng)


# ---------------------------------------------------------------------------------------- runs at block edges
@pytest.mark.parametrize("run", [2, 3, 4])
@pytest.mark.parametrize("inside_first", range(0, 5))
def test_flat_run_at_the_top_across_a_block_edge(run, inside_first):
    x = np.full(16, 0.3, dtype=np.float32)
    x[6 : 6 + run] = 0.9
    x[12] = -0.9  # one isolated sample at the top as well
    edge = 6 + min(inside_first, run)  # the edge falls before, inside or after the run
    got = streamed(split_at(x, [edge])).result()
    assert got == Clipping(run / 16 if run >= 3 else 0.0, float(np.float32(0.9)))
    assert_same(got, x)
    assert_same(streamed(split_at(x, [6, 1, 0, 1, 1])).result(), x)


def test_hand_computed_run_across_two_edges():
    x = np.array([0, 0.5, 0.5, 0.5, 0.2, 0.5, 0.5, 0], dtype=np.float32)  # one run of 3, one of 2
    got = streamed(split_at(x, [2, 1, 0, 3])).result()
    assert got == Clipping(3 / 8, 0.5)
    assert_same(got, x)


# ---------------------------------------------------------------------------------------- top rising late
def test_top_rising_late_drops_the_earlier_runs():
    x = np.array([0.5, 0.5, 0.5, 0.5, 0, 0.8, 0.1], dtype=np.float32)
    got = streamed(split_at(x, [2, 3])).result()
    assert got == Clipping(0.0, float(np.float32(0.8)))  # the flat run at 0.5 no longer counts
    assert_same(got, x)


def test_top_rising_by_steps_within_and_beyond_the_tolerance():
    rng = np.random.default_rng(3)
    for step in (1e-5, 5e-5, 1e-4, 2e-4, 1e-3):  # each rise within or beyond the band of the last top
        tops = (0.9 * (1 + step) ** np.arange(12)).astype(np.float32)
        x = np.repeat(tops, rng.integers(1, 6, tops.size))
        x = np.concatenate([x * rng.choice([-1, 1], x.size), rng.uniform(-0.5, 0.5, 20)]).astype(np.float32)
        assert_streams_like_whole(x, rng)


def test_a_rising_top_only_ever_narrows_the_band():
    # What pruning relies on: a magnitude outside the band of a level is outside the band of every
    # higher level. Checked on every float32 around the lower band edge of many levels and their rises.
    rng = np.random.default_rng(11)
    levels = np.concatenate([10.0 ** rng.uniform(-44, 1, 300), [1.0, 1e-45, 3e-45, 1.2e-38, 0.9999]]).astype(
        np.float32
    )
    for level in levels:
        tol = np.float32(float(level) * 1e-4)
        edge = np.float32(level - tol)
        around = edge + np.arange(-40, 41, dtype=np.float32) * np.spacing(edge)
        around = around[(around >= 0) & (around <= level)].astype(np.float32)
        in_band = np.abs(around - level) <= tol
        for rise in (np.nextafter(level, np.float32(np.inf)), level * np.float32(1.00003), level * 2):
            higher = np.float32(rise)
            in_higher = np.abs(around - higher) <= np.float32(float(higher) * 1e-4)
            assert not np.any(in_higher & ~in_band), (level, higher)


# ---------------------------------------------------------------------------------------- two levels
def test_float_file_top_above_one_with_runs_at_one():
    x = np.array([0.2, 1.0, -1.0, 1.0, 0.3, 1.5, 0.1, 1.0, 1.0, 0.0], dtype=np.float32)
    got = streamed(split_at(x, [2, 0, 1, 1, 5])).result()
    assert got == Clipping(3 / 10, 1.0)  # the run of 3 at 1.0 counts, the run of 2 does not
    assert_same(got, x)


def test_runs_alternating_between_the_two_levels_form_one_run():
    # 1.0, 1.5, 1.0: no level has a run of 3 by itself, their union does
    x = np.array([1.0, 1.5, 1.0, 0.0, 0.0], dtype=np.float32)
    for sizes in ([1, 1], [0, 2, 0], [3], [1, 0, 0, 1, 1]):
        got = streamed(split_at(x, sizes)).result()
        assert got == Clipping(3 / 5, 1.0)
        assert_same(got, x)


def test_run_at_one_stops_touching_the_top_band_when_the_top_rises():
    x = np.array([1.2, 1.0, 1.0, 0.0, 1.0, 1.2, 1.2, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.5], dtype=np.float32)
    rng = np.random.default_rng(5)
    assert_streams_like_whole(x, rng, splits=20)
    assert_same(streamed(split_at(x, [13])).result(), x)  # the rise comes in the last block


@pytest.mark.parametrize("above", [0.0, 2e-5, 5e-5, 1e-4, 1.5e-4, 2e-4, 3e-4])
def test_top_just_above_one_bands_overlap(above):
    rng = np.random.default_rng(int(above * 1e6))
    top = np.float32(1 + above)
    levels = [float(top), float(top * np.float32(0.99993)), 1.0, 0.99995, 1.00008, 0.5]
    for _ in range(6):
        x = flat_signal(rng, 500, [v for v in levels if v <= top])
        x[rng.integers(0, x.size)] = top
        assert_streams_like_whole(x, rng, splits=2)


def test_int16_full_scale_clipping():
    rng = np.random.default_rng(2)
    wave = np.clip(np.round(2.5 * 32768 * rng.standard_normal(3000)), -32768, 32767) / 32768
    x = wave.astype(np.float32)  # top exactly 1.0 (from -32768): both bands are the same samples
    assert detect_clipping(x).level == 1.0 and detect_clipping(x).share > 0.5
    assert_streams_like_whole(x, rng)


# ---------------------------------------------------------------------------------------- degenerate input
def test_empty_and_all_zero():
    assert ClippingCounter().result() == Clipping(0.0, 0.0)
    assert streamed([np.zeros(0, np.float32)] * 3).result() == Clipping(0.0, 0.0)
    zeros = np.zeros(1000, dtype=np.float32)
    got = streamed(split_at(zeros, [1, 0, 2, 500])).result()
    assert got == Clipping(0.0, 0.0)
    assert_same(got, zeros)
    assert_same(streamed([np.zeros(0, np.float32)]).result(), np.zeros(0, np.float32))


def test_leading_silence_then_signal():
    x = np.concatenate([np.zeros(100), [0.25] * 4, np.zeros(3), [0.25]]).astype(np.float32)
    got = streamed(split_at(x, [50, 52])).result()
    assert got == Clipping(4 / 108, 0.25)
    assert_same(got, x)


def test_nan_and_infinite_samples_as_the_whole_file_detector():
    rng = np.random.default_rng(9)
    for bad in (np.nan, np.inf, -np.inf):
        for where in (0, 5, 39):
            x = rng.uniform(-1.2, 1.2, 40).astype(np.float32)
            x[where] = bad
            if math.isnan(bad):  # a NaN wins over an infinite sample
                x[20] = np.inf
            with np.errstate(invalid="ignore"):
                assert_streams_like_whole(x, rng)


def test_other_dtypes_and_min_run():
    x = np.array([0.5, 0.5, 0.0, 0.5, 0.5, 0.5, 0.5, 0.1], dtype=np.float64)
    counter = ClippingCounter(min_run=4)
    for block in split_at(x, [4, 1]):
        counter.update(block)
    assert counter.result() == Clipping(4 / 8, 0.5) == detect_clipping(x, min_run=4)
    with pytest.raises(ValueError, match=r"\(n,\) block"):
        ClippingCounter().update(np.zeros((2, 3), dtype=np.float32))


# ---------------------------------------------------------------------------------------- held state
def test_heavily_clipped_state_grows_only_with_the_runs():
    rng = np.random.default_rng(4)
    x = np.clip(3 * rng.standard_normal(400_000), -0.5, 0.5).astype(np.float32)
    counter = streamed(split_at(x, [4096] * 97))
    assert_same(counter.result(), x)
    mag = np.abs(x)
    band = np.abs(mag - np.float32(0.5)) <= np.float32(0.5e-4)  # the 45,952 flat runs and 8 samples near 0.5
    continues = band[1:] & band[:-1] & (mag[1:] == mag[:-1])
    stretches = int(np.count_nonzero(band)) - int(np.count_nonzero(continues))
    assert stretches < 46_000
    assert counter.spans_held() == stretches  # one span per flat stretch, also across block edges


def test_ordinary_signal_holds_almost_nothing():
    rng = np.random.default_rng(6)
    x = (0.1 * rng.standard_normal(400_000)).astype(np.float32)
    counter = streamed(split_at(x, [4096] * 97))
    assert_same(counter.result(), x)
    top = np.abs(x).max()
    near_top = np.abs(np.abs(x) - top) <= np.float32(float(top) * 1e-4)
    assert counter.spans_held() <= np.count_nonzero(near_top) <= 2


def test_runs_at_one_away_from_the_top_are_counted_not_held():
    # a float file clipped at 1.0 whose top (1.5) lies elsewhere: its runs at 1.0 are counted as they end
    rng = np.random.default_rng(8)
    x = np.clip(3 * rng.standard_normal(20_000), -1, 1).astype(np.float32)
    x[9_999:10_002] = [1.0, 1.5, 0.0]
    counter = streamed(split_at(x, [512] * 39))
    assert_same(counter.result(), x)
    assert counter.result().level == 1.0 and counter.result().share > 0.5
    assert counter.spans_held() == 2  # the sample at 1.5 and the run at 1.0 that ends at it
