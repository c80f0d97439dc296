"""Resume: an interrupted (SIGINT mid-epoch) and resumed CPU run ends bit-identical to an uninterrupted one.

Run A trains 3 epochs in one go. Run B trains 2 epochs (ends at max epochs), is resumed with 3 epochs and
interrupted by a real SIGINT in the middle of epoch 3, then resumed again to the end. Both resume paths
(from an epoch boundary and from inside an epoch) are exercised; every tensor of the final checkpoints and
every logged loss must be equal.
"""

from __future__ import annotations

import json
import signal

import pytest
import torch

from gptsovits_train.config import load_config
from gptsovits_train.errors import GsvError
from gptsovits_train.layout import RunLayout
from gptsovits_train.train.loop import StepInfo, fit
from gptsovits_train.train.metrics import read_metrics
from tests.fit_helpers import CONFIGS, make_dataset

COMPARED_EVENTS = ("step", "val", "epoch")
VOLATILE = {"time", "time_s", "data_wait_frac"}


def _cfg(ds_root, epochs):
    return load_config(
        CONFIGS / "tiny.yaml",
        [
            f"train.dataset={ds_root}",
            f"train.epochs={epochs}",
            "train.batch_size=1",
            "train.min_items_per_epoch=2",  # 2 steps per epoch
            "model.segment_size=1280",
        ],
    )


def assert_same_tensors(a, b, path="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            assert_same_tensors(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def comparable_events(run):
    out = []
    for e in read_metrics(RunLayout(run).metrics):
        if e["event"] in COMPARED_EVENTS:
            out.append({k: v for k, v in e.items() if k not in VOLATILE})
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds"), n_train=2, n_val=1, max_seconds=1.2)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, dataset):
    """Run A: 3 epochs in one go."""
    run = tmp_path_factory.mktemp("a") / "run"
    result = fit(_cfg(dataset.root, 3), run, progress=False)
    assert result.steps == 6 and result.stop_reason == "max_epochs"
    return run


def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, dataset, uninterrupted):
    run_a, run_b = uninterrupted, tmp_path / "b"
    first = fit(_cfg(dataset.root, 2), run_b, progress=False)
    assert first.stop_reason == "max_epochs" and first.steps == 4

    def interrupt_at_step_5(info: StepInfo) -> None:
        if info.step == 5:
            signal.raise_signal(signal.SIGINT)

    second = fit(_cfg(dataset.root, 3), run_b, resume=True, progress=False, on_step=interrupt_at_step_5)
    assert second.stop_reason == "interrupted" and second.steps == 5
    mid = torch.load(RunLayout(run_b).last, weights_only=True)
    assert mid["epoch"] == 3 and mid["progress"] == {
        **mid["progress"],
        "epoch_finished": False,
        "batches_done": 1,
    }

    third = fit(_cfg(dataset.root, 3), run_b, resume=True, progress=False)
    assert third.steps == 6 and third.stop_reason == "max_epochs"
    assert third.summary["resumes"] == 2

    la, lb = RunLayout(run_a), RunLayout(run_b)
    for name in ("last", "best"):
        a = torch.load(getattr(la, name), weights_only=True)
        b = torch.load(getattr(lb, name), weights_only=True)
        for key in ("generator", "discriminator", "optim_g", "optim_d", "scheduler_g", "scheduler_d"):
            assert_same_tensors(a[key], b[key], f"{name}.{key}")
        assert_same_tensors(a["early_stopping"], b["early_stopping"], f"{name}.early_stopping")
        assert (a["epoch"], a["step"], a["metrics"], a["best"]) == (
            b["epoch"],
            b["step"],
            b["metrics"],
            b["best"],
        )
        assert_same_tensors(a["rng"], b["rng"], f"{name}.rng")

    # the logged curves are the same too (no duplicated events from the interrupted epoch)
    assert comparable_events(run_a) == comparable_events(run_b)
    sa = json.loads(la.summary.read_text())
    sb = json.loads(lb.summary.read_text())
    for key in ("best_epoch", "best_value", "val_after_reload_value", "steps", "epochs_completed"):
        assert sa[key] == sb[key], key
    assert sb["reload_matches_best"] is True


def test_resume_refusals_leave_the_run_untouched(tmp_path, dataset, uninterrupted):
    with pytest.raises(GsvError, match="nothing to resume"):
        fit(_cfg(dataset.root, 1), tmp_path / "none", resume=True, progress=False)
    layout = RunLayout(uninterrupted)
    before = {p: p.stat().st_mtime_ns for p in (layout.config, layout.last, layout.summary)}
    with pytest.raises(GsvError, match="already holds a run"):
        fit(_cfg(dataset.root, 3), uninterrupted, progress=False)
    changed = load_config(
        CONFIGS / "tiny.yaml",
        [f"train.dataset={dataset.root}", "model.segment_size=1280", "model.hidden_channels=48"],
    )
    with pytest.raises(GsvError, match=r"model section changed .*hidden_channels"):
        fit(changed, uninterrupted, resume=True, progress=False)
    assert {p: p.stat().st_mtime_ns for p in before} == before
