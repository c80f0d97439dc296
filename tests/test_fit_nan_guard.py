"""The NaN guard through the real loop: poisoned weights -> skipped steps -> rollback with a lower lr;
NaN weights are never saved and a NaN validation never becomes the best."""

from __future__ import annotations

import json
import math

import torch

from gptsovits_train.config import load_config
from gptsovits_train.layout import RunLayout
from gptsovits_train.train.loop import StepInfo, fit
from gptsovits_train.train.metrics import read_metrics
from gptsovits_train.train.run_checkpoints import first_nonfinite
from tests.fit_helpers import CONFIGS, make_dataset


def test_nan_steps_are_skipped_then_rolled_back(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_train=2, n_val=1, max_seconds=1.2)
    cfg = load_config(
        CONFIGS / "tiny.yaml",
        [
            f"train.dataset={ds.root}",
            "train.epochs=3",
            "train.batch_size=1",
            "train.min_items_per_epoch=2",  # 2 steps per epoch
            "model.segment_size=1280",
            "train.nan_patience=2",
            "train.nan_lr_factor=0.5",
        ],
    )
    poisoned = []

    def poison_after_step_2(info: StepInfo) -> None:
        if info.step == 2:  # last step of epoch 1: epoch 1 ends with NaN weights
            with torch.no_grad():
                info.generator.dec.conv_post.weight.fill_(float("nan"))
            poisoned.append(info.step)

    result = fit(cfg, tmp_path / "run", progress=False, on_step=poison_after_step_2)
    layout = RunLayout(tmp_path / "run")
    summary = json.loads(layout.summary.read_text())
    assert poisoned == [2]

    # steps 3 and 4 were non-finite: skipped, then rolled back (to the epoch-0 checkpoint) with lr x0.5
    assert summary["nan_guard"] == {"streak": 0, "skipped_steps": 2, "rollbacks": 1}
    events = read_metrics(layout.metrics)
    assert [e["step"] for e in events if e["event"] == "nan_skip"] == [3, 4]
    (rollback,) = [e for e in events if e["event"] == "nan_rollback"]
    assert rollback["step"] == 4 and rollback["restored_step"] == 0
    assert summary["lr_final"]["g"] == 0.5 * cfg.train.learning_rate
    assert summary["lr_final"]["d"] == 0.5 * cfg.train.learning_rate

    # epoch 1 validated NaN: never best, and its NaN weights were not written
    vals = {e["epoch"]: e for e in events if e["event"] == "val"}
    assert vals[1]["val/mel"] == "nan" and vals[1]["improved"] is False
    assert math.isfinite(vals[2]["val/mel"]) and math.isfinite(vals[3]["val/mel"])
    assert result.best_epoch in (2, 3) and summary["reload_matches_best"] is True
    for path in layout.ckpt_dir.glob("*.pt"):
        state = torch.load(path, weights_only=True)
        assert state["epoch"] != 1, path
        assert (
            first_nonfinite({"generator": state["generator"], "discriminator": state["discriminator"]})
            is None
        )
