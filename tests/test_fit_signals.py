"""SIGTERM to the whole process group of a running `gsv-train fit` (DataLoader workers included) ends the run
like Ctrl-C: last.pt, best reloaded, summary, exit 143. (The engine's other signal cases: test_engine.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import torch

from gptsovits_train.layout import RunLayout
from gptsovits_train.train.metrics import read_metrics
from tests.fit_helpers import fit_cli, make_dataset

DEADLINE_S = 300  # generous: the machine may be busy; every wait asserts that its condition happened


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds"), n_train=2, n_val=1, max_seconds=1.2)


def wait_for(condition, what, proc=None):
    """Poll `condition` until it holds; fail naming `what` (and the process output) at the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process ended (rc {proc.returncode}) before {what}:\n{proc.communicate()[0]}")
        time.sleep(0.2)
    pytest.fail(f"{what} did not happen within {DEADLINE_S} s")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_to_the_process_group_ends_the_run_cleanly(tmp_path, dataset):
    """What `timeout`, `docker stop`, systemd and Slurm do: SIGTERM to every process of the group."""
    run = tmp_path / "run"
    cmd = fit_cli(dataset.root, run, "train.epochs=200", "train.num_workers=2")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    metrics = RunLayout(run / "sovits").metrics  # each stage trains in its own subfolder

    def training_after_a_validation() -> bool:
        try:
            events = read_metrics(metrics) if metrics.is_file() else []
        except ValueError:  # a line being appended right now
            return False
        return any(e["event"] == "val" for e in events) and events[-1]["event"] == "step"

    try:
        wait_for(training_after_a_validation, "a validation followed by a training step", proc)
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 143, out
    assert "Traceback" not in out and "killed by signal" not in out, out
    assert "--resume" in out
    layout = RunLayout(run / "sovits")
    summary = json.loads(layout.summary.read_text())
    assert summary["stop_reason"] == "interrupted" and "SIGTERM" in summary["stop_message"]
    assert summary["reload_matches_best"] is True
    last = torch.load(layout.last, weights_only=True)
    assert last["step"] == summary["steps"] and last["progress"]["epoch_finished"] is False
    wait_for(lambda: not group_alive(proc.pid), "the exit of every process of the group (DataLoader workers)")
