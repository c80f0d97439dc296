"""ValidationMonitor (best + early stopping): table-driven, in the style of Lightning's test_early_stopping.py
(no model needed)."""

from __future__ import annotations

import math

import pytest

from gptsovits_train.config import EarlyStoppingConfig
from gptsovits_train.train.monitor import ValidationMonitor

NAN = float("nan")
INF = float("inf")

# The project's seed curve: validation every 2 epochs.
SEED_EPOCHS = [1, 3, 5, 7, 9, 11, 13]
SEED_VALUES = [0.72, 0.58, 0.46, 0.41, 0.45, 0.52, 0.61]


def run(values, *, epochs=None, **kwargs):
    """Feed `values`; return (index of the stopping validation or None, the ValidationMonitor)."""
    es = ValidationMonitor("val/mel", **kwargs)
    epochs = epochs or list(range(1, len(values) + 1))
    for i, (epoch, value) in enumerate(zip(epochs, values, strict=True)):
        verdict = es.observe(value, epoch)
        stop, reason = verdict.should_stop, verdict.reason
        assert isinstance(reason, str) and reason
        if stop:
            return i, es
    return None, es


def test_seed_curve_best_epoch_7():
    stop_at, es = run(SEED_VALUES, epochs=SEED_EPOCHS, patience=5)
    assert stop_at is None  # 3 bad validations < patience 5: the run ends at max epochs
    assert es.best_epoch == 7
    assert es.best_value == 0.41
    assert es.wait_count == 3
    assert es.patience_left == 2


def test_seed_curve_patience_3_stops_at_epoch_13():
    stop_at, es = run(SEED_VALUES, epochs=SEED_EPOCHS, patience=3)
    assert stop_at == 6
    assert es.stopped_epoch == 13
    assert es.best_epoch == 7
    assert "3 validation" in (es.stop_reason or "")


@pytest.mark.parametrize(
    ("values", "patience", "expected_stop"),
    [
        ([6, 5, 5, 5, 5, 5], 3, 4),  # equal is not an improvement
        ([6, 5, 4, 4, 3, 3], 1, 3),
        ([6, 5, 6, 5, 6, 5], 2, 3),  # 5 again equals the best: no improvement
        ([6, 5, 6, 4.9, 6, 6, 6], 3, 6),
        ([1, 2, 3, 4, 5], 5, None),
        ([1, 2, 3, 4, 5, 6], 5, 5),
        ([3, 2, 1, 0.5, 0.25], 1, None),
    ],
)
def test_patience(values, patience, expected_stop):
    stop_at, _ = run(values, patience=patience, min_delta=0.0)
    assert stop_at == expected_stop


@pytest.mark.parametrize(
    ("values", "min_delta", "patience", "expected_stop", "expected_best"),
    [
        # improvements of 0.05 are below min_delta 0.1: they do not reset patience nor become best
        ([1.0, 0.95, 0.92, 0.91], 0.1, 3, 3, 1.0),
        ([1.0, 0.95, 0.89, 0.85], 0.1, 3, None, 0.89),  # 1.0 - 0.89 = 0.11 > 0.1
        ([1.0, 0.9, 0.8], 0.1, 1, 1, 1.0),  # exactly min_delta is not enough (strict)
        ([0.5, 0.49995, 0.49992, 0.49991], 1e-4, 2, 2, 0.5),
        ([0.5, 0.4998, 0.4996, 0.4994], 1e-4, 1, None, 0.4994),
    ],
)
def test_min_delta(values, min_delta, patience, expected_stop, expected_best):
    stop_at, es = run(values, min_delta=min_delta, patience=patience)
    assert stop_at == expected_stop
    assert es.best_value == pytest.approx(expected_best)


@pytest.mark.parametrize(
    ("values", "warmup", "patience", "expected_stop", "expected_best_epoch"),
    [
        # no warm-up: stops on the 2nd bad validation
        ([1.0, 2.0, 2.0, 2.0, 2.0], 0, 2, 2, 1),
        # validations at epochs <= 3 do not use patience: the bad epochs 2,3 are free, 4 and 5 count
        ([1.0, 2.0, 2.0, 2.0, 2.0], 3, 2, 4, 1),
        # a new best during warm-up is still recorded
        ([1.0, 2.0, 0.5, 2.0, 2.0, 2.0], 3, 2, 4, 3),
        ([1.0, 2.0, 2.0, 2.0, 2.0, 2.0], 5, 2, None, 1),
    ],
)
def test_warmup(values, warmup, patience, expected_stop, expected_best_epoch):
    stop_at, es = run(values, warmup_epochs=warmup, patience=patience, min_delta=0.0)
    assert stop_at == expected_stop
    assert es.best_epoch == expected_best_epoch


@pytest.mark.parametrize(
    ("values", "patience", "expected_stop", "expected_best"),
    [
        ([NAN, NAN, NAN], 3, 2, None),  # NaN never becomes the best and counts as no improvement
        ([1.0, NAN, 0.5], 2, None, 0.5),
        ([1.0, NAN, INF], 2, 2, 1.0),
        ([NAN, 2.0, 1.0], 5, None, 1.0),
    ],
)
def test_nonfinite_never_improves(values, patience, expected_stop, expected_best):
    stop_at, es = run(values, patience=patience, min_delta=0.0)
    assert stop_at == expected_stop
    assert es.best_value == expected_best


def test_disabled_never_stops_but_keeps_bookkeeping():
    stop_at, es = run([1, 2, 3, 4, 5], patience=1, enabled=False)
    assert stop_at is None
    assert es.best_epoch == 1
    assert es.wait_count == 4


def test_mode_max():
    stop_at, es = run([0.1, 0.3, 0.2, 0.2], mode="max", patience=2, min_delta=0.0)
    assert stop_at == 3
    assert es.best_value == 0.3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "median"},
        {"patience": 0},
        {"min_delta": -1.0},
        {"min_delta": math.inf},
        {"warmup_epochs": -1},
    ],
)
def test_constructor_validates(kwargs):
    with pytest.raises(ValueError):
        ValidationMonitor("val/mel", **kwargs)


def test_state_round_trip_continues_identically():
    values = [0.9, 0.8, 0.85, 0.86, 0.79, 0.8, 0.81, 0.82]
    full_stop, full = run(values, patience=3, min_delta=0.0)

    first = ValidationMonitor("val/mel", patience=3, min_delta=0.0)
    for epoch, v in enumerate(values[:4], start=1):
        first.observe(v, epoch)
    state = first.state_dict()
    resumed = ValidationMonitor("val/mel", patience=3, min_delta=0.0)
    resumed.load_state_dict(state)
    stop_at = None
    for i, v in enumerate(values[4:], start=4):
        if resumed.observe(v, i + 1).should_stop:
            stop_at = i
            break
    assert stop_at == full_stop == 7
    assert resumed.state_dict() == full.state_dict()


def test_state_of_another_monitor_is_not_reused():
    es = ValidationMonitor("val/mel")
    es.observe(0.5, 1)
    other = ValidationMonitor("val/total")
    other.load_state_dict(es.state_dict())
    assert other.best_value is None


def test_from_config():
    es = ValidationMonitor.from_config(EarlyStoppingConfig(patience=7, min_delta=0.01, warmup_epochs=2))
    assert (es.patience, es.min_delta, es.warmup_epochs, es.monitor) == (7, 0.01, 2, "val/mel")


def test_verdict_carries_the_best_and_the_patience():
    m = ValidationMonitor("val/mel", patience=2, min_delta=0.01)
    first, small, worse = m.observe(0.5, 1, 10), m.observe(0.495, 2, 20), m.observe(0.6, 3, 30)
    assert (first.improved, first.best_value, first.best_epoch, first.patience_left) == (True, 0.5, 1, 2)
    # 0.495 beats 0.5 by less than min_delta: not the best (so not best.pt), one validation of patience used
    assert (small.improved, small.best_value, small.best_epoch, small.patience_left) == (False, 0.5, 1, 1)
    assert worse.should_stop and worse.patience_left == 0 and "did not improve" in worse.reason
    assert m.best_record() == {"epoch": 1, "step": 10, "metric": "val/mel", "value": 0.5}


def test_older_checkpoints_best_record_wins():
    """Before the monitor owned "best", best.pt followed a strict `<` of its own: on resume the record of
    what best.pt holds wins over the early-stopping bookkeeping."""
    old = ValidationMonitor("val/mel", patience=5, min_delta=1e-4)
    for epoch, v in [(1, 0.5), (2, 0.49995), (3, 0.6)]:
        old.observe(v, epoch)
    state = old.state_dict()
    del state["best_step"]  # not in older checkpoints
    resumed = ValidationMonitor("val/mel", patience=5, min_delta=1e-4)
    resumed.load_state_dict(state, best={"epoch": 2, "step": 20, "metric": "val/mel", "value": 0.49995})
    assert (resumed.best_value, resumed.best_epoch, resumed.best_step) == (0.49995, 2, 20)
    assert resumed.wait_count == 2
