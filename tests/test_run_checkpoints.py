"""RunCheckpoints: best/last/top-k driven by the monitor's verdicts, NaN handling, eviction order,
weights_only loading, state."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from gptsovits_train.errors import CheckpointError
from gptsovits_train.layout import RunLayout
from gptsovits_train.train.monitor import ValidationMonitor
from gptsovits_train.train.run_checkpoints import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    RunCheckpoints,
    first_nonfinite,
    load_run_checkpoint,
)


def make_state(epoch: int, *, poison: bool = False) -> dict:
    g = {"dec.weight": torch.full((3, 2), float(epoch)), "dec.bias": torch.zeros(3)}
    if poison:
        g["dec.weight"][1, 1] = float("nan")
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "generator": g,
        "discriminator": {"w": torch.ones(2)},
        "epoch": epoch,
        "step": epoch * 10,
        "rng": {"numpy": {"keys": [1, 2, 3]}},
    }


def epoch_of(path: Path) -> int:
    return int(load_run_checkpoint(path)["epoch"])


class Run:
    """The monitor (min_delta 0: strictly lower is better) and the checkpoints of one run, saved together."""

    def __init__(self, layout: RunLayout, **kwargs) -> None:
        self.monitor = ValidationMonitor("val/mel", patience=100, min_delta=0.0)
        self.mgr = RunCheckpoints(layout, **kwargs)

    def save(self, state: dict, *, epoch: int, step: int, score: float | None):
        """What the engine does: weights that cannot be saved never become the best."""
        if score is not None and self.mgr.unsaveable(state):
            score = math.nan
        verdict = None if score is None else self.monitor.observe(score, epoch, step)
        state["best"] = self.monitor.best_record()
        state["early_stopping"] = self.monitor.state_dict()
        return self.mgr.save(state, verdict, epoch=epoch, step=step)

    def load(self, state: dict) -> None:
        self.mgr.load_state_dict(state["top_k"])
        self.monitor.load_state_dict(state["early_stopping"], best=state["best"])

    @property
    def best(self):
        return self.monitor.best_record()

    @property
    def best_value(self):
        return self.monitor.best_value

    @property
    def best_k(self):
        return self.mgr.best_k

    @property
    def best_k_models(self):
        return self.mgr.best_k_models


def test_best_last_topk_through_a_run(tmp_path):
    layout = RunLayout(tmp_path)
    mgr = Run(layout, top_k=2)
    scores = {1: 0.72, 3: 0.58, 5: 0.46, 7: 0.41, 9: 0.45, 11: 0.52, 13: 0.61}
    for epoch, score in scores.items():
        out = mgr.save(make_state(epoch), epoch=epoch, step=epoch * 10, score=score)
        assert layout.last in out.written
        assert out.is_best == (epoch in (1, 3, 5, 7))
    assert mgr.best == {"epoch": 7, "step": 70, "metric": "val/mel", "value": 0.41}
    assert epoch_of(layout.best) == 7
    assert epoch_of(layout.last) == 13
    assert mgr.best_k_models == {layout.epoch_ckpt(7): 0.41, layout.epoch_ckpt(9): 0.45}
    on_disk = sorted(p.name for p in layout.ckpt_dir.iterdir())
    assert on_disk == ["best.pt", "epoch_0007.pt", "epoch_0009.pt", "last.pt"]
    # every file carries the best record and the top-k bookkeeping, and loads with weights_only=True
    state = torch.load(layout.last, weights_only=True)
    assert state["best"]["epoch"] == 7
    assert state["top_k"]["best_k"] == {"epoch_0007.pt": 0.41, "epoch_0009.pt": 0.45}
    assert torch.equal(
        torch.load(layout.best, weights_only=True)["generator"]["dec.weight"], torch.full((3, 2), 7.0)
    )


def test_nan_weights_are_never_saved(tmp_path):
    layout = RunLayout(tmp_path)
    mgr = Run(layout, top_k=3)
    mgr.save(make_state(1), epoch=1, step=10, score=0.9)
    out = mgr.save(make_state(2, poison=True), epoch=2, step=20, score=0.1)
    assert out.skipped and "generator.dec.weight" in out.skipped
    assert out.written == [] and not out.is_best
    assert epoch_of(layout.last) == 1 and epoch_of(layout.best) == 1
    assert mgr.best_value == 0.9
    assert not layout.epoch_ckpt(2).exists()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_score_is_never_best(tmp_path, bad):
    layout = RunLayout(tmp_path)
    mgr = Run(layout, top_k=3)
    out = mgr.save(make_state(1), epoch=1, step=10, score=bad)
    assert out.written == [layout.last]
    assert not layout.best.exists()
    assert mgr.best is None and mgr.best_k == {}
    assert mgr.save(make_state(2), epoch=2, step=20, score=5.0).is_best


def test_score_none_writes_last_only(tmp_path):
    layout = RunLayout(tmp_path)
    mgr = Run(layout, top_k=3)
    mgr.save(make_state(1), epoch=1, step=10, score=0.5)
    out = mgr.save(make_state(2), epoch=2, step=15, score=None)
    assert out.written == [layout.last]
    assert epoch_of(layout.last) == 2 and epoch_of(layout.best) == 1


def test_evicted_file_is_deleted_after_the_new_one_is_written(tmp_path, monkeypatch):
    layout = RunLayout(tmp_path)
    mgr = Run(layout, top_k=1)
    mgr.save(make_state(1), epoch=1, step=10, score=0.5)
    seen = []
    real_unlink = Path.unlink

    def spy(self, missing_ok=False):
        if self.name == "epoch_0001.pt":
            seen.append(layout.epoch_ckpt(2).is_file())
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", spy)
    out = mgr.save(make_state(2), epoch=2, step=20, score=0.4)
    assert out.evicted == [layout.epoch_ckpt(1)]
    assert seen == [True]
    assert not layout.epoch_ckpt(1).exists()


def test_files_are_independent_after_later_saves(tmp_path):
    """best.pt shares storage with the epoch's other files; later saves must not change it."""
    layout = RunLayout(tmp_path)
    mgr = Run(layout, top_k=0)
    mgr.save(make_state(1), epoch=1, step=10, score=0.1)
    for epoch in range(2, 5):
        mgr.save(make_state(epoch), epoch=epoch, step=epoch * 10, score=1.0)
    assert epoch_of(layout.best) == 1 and epoch_of(layout.last) == 4
    assert sorted(p.name for p in layout.ckpt_dir.iterdir()) == ["best.pt", "last.pt"]


def test_state_round_trip_and_resume_bookkeeping(tmp_path):
    layout = RunLayout(tmp_path)
    mgr = Run(layout, top_k=2)
    for epoch, score in [(1, 0.5), (2, 0.4), (3, 0.45)]:
        mgr.save(make_state(epoch), epoch=epoch, step=epoch, score=score)
    resumed = Run(layout, top_k=2)
    resumed.load(load_run_checkpoint(layout.last))
    assert resumed.best_k == mgr.best_k and resumed.best == mgr.best
    out = resumed.save(make_state(4), epoch=4, step=4, score=0.3)
    assert out.is_best and out.evicted == [layout.epoch_ckpt(3)]  # top-2 was {2: 0.4, 3: 0.45}


def test_non_writing_rank_keeps_bookkeeping_only(tmp_path):
    layout = RunLayout(tmp_path)
    mgr = Run(layout, top_k=2, write=False)
    out = mgr.save(make_state(1), epoch=1, step=1, score=0.5)
    assert out.is_best and out.written == []
    assert not layout.ckpt_dir.exists()


class Evil:
    """A pickled class: never loadable with weights_only=True."""


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_run_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_run_checkpoint(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": {}}, foreign)
    with pytest.raises(CheckpointError, match="format tag"):
        load_run_checkpoint(foreign)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "x": Evil()}, pickled)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_run_checkpoint(pickled)


def test_first_nonfinite():
    assert first_nonfinite({"generator": {"a": torch.ones(2), "n": torch.tensor([1, 2])}}) is None
    assert first_nonfinite({"generator": {"a": torch.tensor([1.0, math.inf])}}) == "generator.a"
