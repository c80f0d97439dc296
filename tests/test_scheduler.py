"""Learning-rate schedules: plateau halving table, min lr, exponential decay, state round trip."""

from __future__ import annotations

import pytest
import torch

from gptsovits_train.config import SchedulerConfig
from gptsovits_train.train.monitor import ValidationMonitor
from gptsovits_train.train.schedulers import (
    ExponentialDecay,
    ReduceLROnPlateau,
    build_scheduler,
    current_lrs,
)


def verdicts(values, min_delta=1e-4):
    """The monitor's verdict on each value (what the loop passes to the schedules)."""
    monitor = ValidationMonitor("val/mel", patience=1000, min_delta=min_delta)
    return [monitor.observe(v, epoch) for epoch, v in enumerate(values, start=1)]


def make_optimizer(lr: float = 1e-4) -> torch.optim.Optimizer:
    """Two groups like the generator's: base and a 0.4x text group."""
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    return torch.optim.AdamW([{"params": [a], "lr": lr}, {"params": [b], "lr": lr * 0.4}], lr=lr)


@pytest.mark.parametrize(
    ("values", "expected_base_lrs"),
    [
        # improvement, then 3 validations without improvement -> halved on the 3rd
        ([1.0, 1.1, 1.2, 1.3], [1e-4, 1e-4, 1e-4, 5e-5]),
        # the count restarts after a reduction: the next halving needs 3 more bad validations
        ([1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6], [1e-4, 1e-4, 1e-4, 5e-5, 5e-5, 5e-5, 2.5e-5]),
        # an improvement resets the count
        ([1.0, 1.1, 1.2, 0.9, 1.0, 1.0, 1.0], [1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4, 5e-5]),
        # improvements below the threshold (1e-4) do not count
        ([1.0, 0.99995, 0.99992, 0.99991], [1e-4, 1e-4, 1e-4, 5e-5]),
        # NaN is never an improvement
        ([1.0, float("nan"), float("nan"), float("nan")], [1e-4, 1e-4, 1e-4, 5e-5]),
    ],
)
def test_plateau_halves_after_three_bad_validations(values, expected_base_lrs):
    opt = make_optimizer()
    sched = ReduceLROnPlateau(opt, factor=0.5, patience=3, min_lr=1e-6)
    seen = []
    for verdict in verdicts(values, min_delta=1e-4):
        sched.step_epoch()  # no effect on the plateau schedule
        sched.step_validation(verdict)
        seen.append(current_lrs(opt))
    assert [lrs[0] for lrs in seen] == pytest.approx(expected_base_lrs)
    # the 0.4x group keeps its ratio
    assert [lrs[1] for lrs in seen] == pytest.approx([0.4 * x for x in expected_base_lrs])


def test_plateau_min_lr_floor():
    opt = make_optimizer(lr=4e-6)
    sched = ReduceLROnPlateau(opt, factor=0.5, patience=1, min_lr=1e-6)
    for verdict in verdicts([1.0] + [2.0] * 10):
        sched.step_validation(verdict)
    assert current_lrs(opt) == pytest.approx([1e-6, 1e-6])
    # once every group is at the floor, further reductions are not counted
    assert sched.num_reductions == 2  # base 4e-6 -> 2e-6 -> 1e-6 (text 1.6e-6 -> 1e-6), then nothing changes


def test_plateau_state_round_trip():
    opt = make_optimizer()
    sched = ReduceLROnPlateau(opt, patience=3)
    seq = verdicts([1.0, 1.1, 1.2, 1.3])
    for verdict in seq[:3]:
        sched.step_validation(verdict)
    state = sched.state_dict()
    torch.save(state, buf := __import__("io").BytesIO())
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)

    opt2 = make_optimizer(lr=123.0)  # lrs are restored from the state
    sched2 = ReduceLROnPlateau(opt2, patience=3)
    sched2.load_state_dict(loaded)
    assert current_lrs(opt2) == pytest.approx(current_lrs(opt))
    sched.step_validation(seq[3])
    sched2.step_validation(seq[3])
    assert current_lrs(opt2) == pytest.approx([5e-5, 2e-5])
    assert sched2.state_dict() == sched.state_dict()


def test_exponential_official_gamma_per_epoch():
    opt = make_optimizer()
    sched = ExponentialDecay(opt, gamma=0.999875)
    for verdict in verdicts([0.0] * 8):
        sched.step_validation(verdict)  # validations do nothing
        sched.step_epoch()
    assert current_lrs(opt)[0] == pytest.approx(1e-4 * 0.999875**8, rel=1e-12)
    assert current_lrs(opt)[1] == pytest.approx(0.4e-4 * 0.999875**8, rel=1e-12)
    state = sched.state_dict()
    opt2 = make_optimizer()
    sched2 = ExponentialDecay(opt2, gamma=0.999875)
    sched2.load_state_dict(state)
    assert current_lrs(opt2) == current_lrs(opt)
    with pytest.raises(ValueError, match="plateau"):
        ReduceLROnPlateau(opt2).load_state_dict(state)


def test_build_scheduler_from_config():
    opt = make_optimizer()
    assert isinstance(build_scheduler(SchedulerConfig(), opt), ReduceLROnPlateau)
    exp = build_scheduler(SchedulerConfig(kind="exponential"), opt)
    assert isinstance(exp, ExponentialDecay) and exp.gamma == 0.999875


@pytest.mark.parametrize("kwargs", [{"factor": 1.0}, {"factor": 0.0}, {"patience": 0}, {"min_lr": -1.0}])
def test_plateau_validates(kwargs):
    with pytest.raises(ValueError):
        ReduceLROnPlateau(make_optimizer(), **kwargs)
