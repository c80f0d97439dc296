"""`prepare` and signals, through real processes: SIGINT/SIGTERM to the whole process group stop the
pool cleanly (finished work kept, one line saying how to resume, exit 128 + signal), and pool workers
do not outlive a `kill -9`-ed parent.

The CLI runs in a child process through a small wrapper that makes sources named `block*` hang
inside the pool worker (so the test knows the run is mid-way, whatever the machine's load); every
wait polls a condition with a generous deadline and asserts that it was reached.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DEADLINE = 180.0  # seconds; generous for a loaded machine, only reached when something is broken

WRAPPER = """
import os, sys, time
from pathlib import Path

import gptsovits_train.data.prepare as prep

markers = Path(os.environ["GSV_TEST_MARKERS"])
real = prep.process_source


def hanging(job):
    if job.source.id.startswith("block"):
        (markers / f"{os.getpid()}.pid").write_text(job.source.id)
        time.sleep(3600)
    return real(job)


prep.process_source = hanging
from gptsovits_train.cli import main

sys.argv = ["gsv-train", *sys.argv[1:]]
main()
"""


def wait_for(condition: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _tone(path: Path, seconds: float) -> None:
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)


@pytest.fixture
def started(tmp_path: Path):
    """Start `prepare -j 2` on one quick and two hanging sources; yield (process, out, markers)."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to watch the worker processes")
    inputs, markers, out = tmp_path / "in", tmp_path / "markers", tmp_path / "ds"
    inputs.mkdir()
    markers.mkdir()
    _tone(inputs / "a_quick.wav", 2.0)
    _tone(inputs / "block1.wav", 2.0)
    _tone(inputs / "block2.wav", 2.0)
    script = tmp_path / "wrapper.py"
    script.write_text(WRAPPER)
    env = dict(os.environ, GSV_TEST_MARKERS=str(markers), PYTHONPATH=str(REPO))
    cmd = [sys.executable, str(script), "prepare", str(inputs), "--slice-only", "-j", "2"]
    cmd += ["--language", "en", "--out", str(out), "-q"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    records = out / ".work" / "sources"
    try:
        reached = wait_for(
            lambda: (
                (len(list(markers.glob("*.pid"))) == 2 and len(list(records.glob("*.json"))) == 1)
                or proc.poll() is not None
            )
        )
        assert reached and proc.poll() is None, proc.communicate()
        yield proc, out, [int(p.stem) for p in markers.glob("*.pid")]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_to_process_group_stops_cleanly(started, signum: int, code: int) -> None:
    proc, out, workers = started
    os.killpg(proc.pid, signum)  # what `timeout`, docker stop, systemd and Ctrl-C do
    _, stderr = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == code, stderr
    name = signal.Signals(signum).name
    assert f"prepare stopped by {name} (1 of 3 source files done)" in stderr
    assert "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    assert wait_for(lambda: not any(alive(pid) for pid in workers))
    assert len(list((out / ".work" / "sources").glob("*.json"))) == 1  # the finished source is kept
    assert sorted(p.name for p in (out / "wavs").iterdir()) == [
        p.name for p in sorted((out / "wavs").iterdir()) if p.name.startswith("a_quick_")
    ]


def test_workers_exit_when_the_parent_is_killed(started) -> None:
    proc, _, workers = started
    assert len(workers) == 2 and all(alive(pid) for pid in workers)
    os.kill(proc.pid, signal.SIGKILL)  # no handler can run: only the kernel/the workers can act
    proc.wait(timeout=DEADLINE)
    assert wait_for(lambda: not any(alive(pid) for pid in workers)), "pool workers outlived their parent"
