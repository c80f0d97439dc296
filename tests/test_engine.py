"""The engine on a toy stage (`tests/engine_helpers.py`): any stage trains, resumes bit-identically, ends on
its best weights; Ctrl-C while a run ends; a reload that does not match fails the run after writing
everything; checkpoints in the older layout still resume."""

from __future__ import annotations

import json
import multiprocessing
import signal

import pytest
import torch

from gptsovits_train.errors import GsvError
from gptsovits_train.layout import RunLayout
from gptsovits_train.train.loop import ReloadMismatchError, StepInfo, run_stage
from gptsovits_train.train.metrics import read_metrics
from gptsovits_train.train.run_checkpoints import load_run_checkpoint
from tests.engine_helpers import ToyStage, toy_config

VOLATILE = {"time", "time_s", "data_wait_frac"}


def events(run, kinds=("step", "epoch", "val")):
    return [
        {k: v for k, v in e.items() if k not in VOLATILE}
        for e in read_metrics(RunLayout(run).metrics)
        if e["event"] in kinds
    ]


def test_a_stage_trains_validates_and_ends_on_its_best(tmp_path):
    cfg = toy_config("train.epochs=3", "train.learning_rate=0.05", "train.log_every=1")
    stage = ToyStage(cfg)
    result = run_stage(stage, cfg, tmp_path / "run", progress=False)
    layout = RunLayout(tmp_path / "run")
    vals = [e for e in events(tmp_path / "run") if e["event"] == "val"]
    # 8 items in batches of 2: 4 steps per epoch; the regression improves every epoch
    assert result.steps == 12 and result.epochs_completed == 3 and result.stop_reason == "max_epochs"
    assert [e["epoch"] for e in vals] == [1, 2, 3] and [e["improved"] for e in vals] == [True] * 3
    assert vals[0]["val/mel"] > vals[1]["val/mel"] > vals[2]["val/mel"]
    assert result.best_epoch == 3 and result.val_after_reload == result.best_value == vals[2]["val/mel"]
    summary = json.loads(layout.summary.read_text())
    assert summary["stage"] == "toy" and summary["dataset"] == {"items": 8}
    assert summary["init"] == {"model": "zeros"} and set(summary["lr_final"]) == {"m"}
    best = load_run_checkpoint(layout.best)
    assert best["stage"] == "toy" and best["epoch"] == 3 and set(best) >= {"model", "optim", "schedule"}
    assert best["best"] == {"epoch": 3, "step": 12, "metric": "val/mel", "value": vals[2]["val/mel"]}
    assert torch.equal(best["model"]["weight"], stage.model.weight.detach())  # the best weights reloaded
    out = stage.export(layout.best, tmp_path / "toy.pt")
    assert torch.equal(torch.load(out, weights_only=True)["bias"], best["model"]["bias"])


def test_interrupted_and_resumed_toy_run_is_bit_identical(tmp_path):
    cfg = toy_config("train.epochs=3", "train.learning_rate=0.05")
    run_stage(ToyStage(cfg), cfg, tmp_path / "a", progress=False)

    def ctrl_c_at_step_6(info: StepInfo) -> None:
        if info.step == 6:  # epoch 2, batch 2 of 4
            signal.raise_signal(signal.SIGINT)

    first = run_stage(ToyStage(cfg), cfg, tmp_path / "b", progress=False, on_step=ctrl_c_at_step_6)
    assert (first.stop_reason, first.signal, first.steps) == ("interrupted", "SIGINT", 6)
    second = run_stage(ToyStage(cfg), cfg, tmp_path / "b", resume=True, progress=False)
    assert second.steps == 12 and second.summary["resumes"] == 1
    for name in ("last", "best"):
        a = load_run_checkpoint(getattr(RunLayout(tmp_path / "a"), name))
        b = load_run_checkpoint(getattr(RunLayout(tmp_path / "b"), name))
        for key in ("model", "epoch", "step", "best", "metrics", "early_stopping", "schedule"):
            assert str(a[key]) == str(b[key]), (name, key)
    assert events(tmp_path / "a") == events(tmp_path / "b")


def test_ctrl_c_while_the_run_is_ending_after_an_early_stop(tmp_path):
    """The run has stopped early and is reloading its best weights when Ctrl-C arrives: the end of the run
    goes on, and the DataLoader workers end inside the run (nothing left for an exit hook)."""
    calls = []

    def scripted(model, epoch, final):
        calls.append((epoch, final))
        if final:
            signal.raise_signal(signal.SIGINT)
        return {1: 0.5, 2: 0.6}[epoch]

    cfg = toy_config("train.epochs=10", "train.early_stopping.patience=1")
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the tests run as a background job
    result = run_stage(ToyStage(cfg, num_workers=1, scripted=scripted), cfg, tmp_path / "run", progress=False)
    assert calls == [(1, False), (2, False), (1, True)]
    assert (result.stop_reason, result.best_epoch, result.val_after_reload) == ("early_stopping", 1, 0.5)
    assert result.signal is None and result.summary["reload_matches_best"] is True
    assert multiprocessing.active_children() == []
    assert signal.getsignal(signal.SIGINT) is before  # the run's own handler is gone


def test_reload_mismatch_fails_the_run_after_writing_everything(tmp_path):
    cfg = toy_config("train.epochs=2")
    stage = ToyStage(cfg, scripted=lambda model, epoch, final: 0.25 if final else 1.0 / epoch)
    with pytest.raises(ReloadMismatchError) as err:
        run_stage(stage, cfg, tmp_path / "run", progress=False)
    message = str(err.value)
    assert "epoch 2" in message and "0.25" in message and "0.5" in message
    layout = RunLayout(tmp_path / "run")
    summary = json.loads(layout.summary.read_text())
    assert (summary["best_value"], summary["val_after_reload_value"]) == (0.5, 0.25)
    assert summary["reload_matches_best"] is False
    assert layout.curves.is_file() and layout.best.is_file() and layout.last.is_file()
    assert read_metrics(layout.metrics)[-1]["event"] == "final"


def test_resume_from_a_checkpoint_in_the_older_layout(tmp_path):
    """Format version 1 as written before the engine: no stage name (SoVITS), the best record also in the
    checkpoint bookkeeping (`top_k`) and in the plateau schedules, no best step in the monitor state."""
    cfg = toy_config("train.epochs=2", "train.learning_rate=0.05")
    run_stage(ToyStage(cfg), cfg, tmp_path / "run", progress=False)
    layout = RunLayout(tmp_path / "run")
    state = torch.load(layout.last, weights_only=True)
    best = state["best"]
    del state["early_stopping"]["best_step"]
    state["top_k"] = {**state["top_k"], "monitor": "val/mel", "best": dict(best)}
    state["schedule"] = {**state["schedule"], "best": best["value"]}
    torch.save(state, layout.last)

    more = toy_config("train.epochs=3", "train.learning_rate=0.05")
    result = run_stage(ToyStage(more), more, tmp_path / "run", resume=True, progress=False)
    assert result.epochs_completed == 3 and result.summary["resumes"] == 1
    assert result.summary["reload_matches_best"] is True

    del state["stage"]  # what every checkpoint before the engine lacked: they are SoVITS checkpoints
    torch.save(state, layout.last)
    assert load_run_checkpoint(layout.last)["stage"] == "sovits"
    with pytest.raises(GsvError, match="is a sovits checkpoint, this is the toy stage"):
        run_stage(ToyStage(more), more, tmp_path / "run", resume=True, progress=False)
