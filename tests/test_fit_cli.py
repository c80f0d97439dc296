"""`gsv-train fit` end to end on the tiny config: outputs, a consistent summary, the checkpoint contract."""

from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist
import yaml
from typer.testing import CliRunner

from gptsovits_train import __version__
from gptsovits_train.cli import app
from gptsovits_train.layout import RunLayout
from gptsovits_train.train.metrics import read_metrics
from tests.fit_helpers import CONFIGS, make_dataset

CONTRACT_KEYS = {
    "format",
    "format_version",
    "tool_version",
    "generator",
    "discriminator",
    "optim_g",
    "optim_d",
    "scaler",
    "scheduler_g",
    "scheduler_d",
    "early_stopping",
    "rng",
    "epoch",
    "step",
    "metrics",
    "best",
    "config",
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds"), n_train=6, n_val=2, max_seconds=2.0)


def test_tiny_fit_end_to_end(tmp_path, dataset):
    run = tmp_path / "run"
    args = ["fit", "--config", str(CONFIGS / "tiny.yaml"), "--set", f"train.dataset={dataset.root}"]
    result = CliRunner().invoke(app, [*args, "--run-dir", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "best epoch" in result.output and f"gsv-train export-best {run}" in result.output
    assert not dist.is_initialized()  # one process never creates a process group

    assert sorted(p.name for p in run.iterdir()) == ["sovits"]  # each stage in its own subfolder
    layout = RunLayout(run / "sovits")
    summary = json.loads(layout.summary.read_text())
    events = read_metrics(layout.metrics)
    vals = [e for e in events if e["event"] == "val"]
    # tiny.yaml: 3 epochs; 6 clips x1 with batch 2 = 3 steps per epoch; validation after every epoch
    assert [e["epoch"] for e in vals] == [1, 2, 3]
    assert summary["steps"] == 9 and summary["epochs_completed"] == 3
    assert summary["dataset"]["train_clips"] == 6 and summary["dataset"]["val_clips"] == 2
    assert summary["dataset"]["steps_per_epoch"] == 3
    best = min(vals, key=lambda e: e["val/mel"])
    assert summary["best_epoch"] == best["epoch"] and summary["best_value"] == best["val/mel"]
    assert summary["val_after_reload_value"] == summary["best_value"] and summary["reload_matches_best"]
    assert summary["stop_reason"] == "max_epochs"
    assert summary["precision"] == "fp32" and summary["device"] == "cpu" and summary["world_size"] == 1
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(1, 10))  # log_every 1
    for e in vals:
        assert e["val/total"] == pytest.approx(45 * e["val/recon"] + e["val/kl"])
        assert e["clips"] == 2

    # files a run leaves behind
    for path in (layout.config, layout.curves, layout.best, layout.last):
        assert path.is_file(), path
    assert any(layout.tb_dir.iterdir())
    saved_cfg = yaml.safe_load(layout.config.read_text())
    assert saved_cfg["train"]["dataset"] == str(dataset.root)

    # the run-checkpoint contract: weights_only, plain types, fp32 weights, the resolved config
    ck = torch.load(layout.best, weights_only=True)
    assert set(ck) >= CONTRACT_KEYS
    assert ck["format"] == "gsv-train-checkpoint" and ck["format_version"] == 1
    assert ck["tool_version"] == __version__
    assert ck["epoch"] == summary["best_epoch"] and ck["best"]["value"] == summary["best_value"]
    assert ck["best"]["metric"] == "val/mel"
    assert all(t.dtype == torch.float32 for t in ck["generator"].values() if t.is_floating_point())
    assert ck["config"] == saved_cfg
    assert isinstance(ck["rng"]["ranks"][0]["numpy"]["keys"], list)


def test_fit_cli_errors(tmp_path, dataset):
    runner = CliRunner()
    missing = runner.invoke(
        app, ["fit", "--config", str(CONFIGS / "tiny.yaml"), "--set", f"train.dataset={tmp_path / 'nope'}"]
    )
    assert missing.exit_code == 2 and "dataset folder not found" in missing.output  # a usage error
    unknown = runner.invoke(app, ["fit", "--config", str(CONFIGS / "tiny.yaml"), "--set", "train.epochz=3"])
    assert unknown.exit_code == 2 and "train.epochz" in unknown.output
    no_dataset = runner.invoke(
        app, ["fit", "--config", str(CONFIGS / "tiny.yaml"), "--run-dir", str(tmp_path)]
    )
    assert no_dataset.exit_code == 2 and "train.dataset is not set" in no_dataset.output
    assert not (tmp_path / "config.yaml").exists()
