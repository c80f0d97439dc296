"""The GPT stage end to end through the CLI: fit (own subfolder, validation, best reload), export-best in the
official format, inspect; exact resume on CPU; both stages in one run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gptsovits_train.cli import app
from gptsovits_train.config import load_config
from gptsovits_train.train.run_checkpoints import load_run_checkpoint
from tests.fit_helpers import CONFIGS, make_dataset
from tests.gpt_helpers import TINY_GPT, add_gpt_features


@pytest.fixture(scope="module")
def gpt_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    layout = make_dataset(tmp_path_factory.mktemp("gptds") / "ds", n_train=6, n_val=2, max_seconds=1.5)
    add_gpt_features(layout)
    return layout.root


def _args(dataset: Path, *extra: str) -> list[str]:
    out = ["--config", str(CONFIGS / "tiny.yaml"), "--set", f"train.dataset={dataset}"]
    for s in (*TINY_GPT, *extra):
        out += ["--set", s]
    return out


def test_gpt_stage_fits_exports_and_inspects(gpt_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "voice"
    runner = CliRunner()
    r = runner.invoke(app, ["fit", "--stage", "gpt", "--run-dir", str(run), *_args(gpt_dataset)])
    assert r.exit_code == 0, r.output
    gpt_dir = run / "gpt"
    summary = json.loads((gpt_dir / "summary.json").read_text())
    assert summary["stage"] == "gpt" and summary["monitor"] == "val/loss"
    assert summary["best_epoch"] in (1, 2) and summary["reload_matches_best"]
    assert set(summary["val_after_reload"]) >= {"val/loss", "val/top1", "val/top3", "val/eos_acc"}
    assert not (run / "sovits").exists()
    report = json.loads((gpt_dir / "gpt_dataset.json").read_text())
    assert report["train_clips"] == 6 and report["val_clips"] == 2
    lines = [json.loads(x) for x in (gpt_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("val/loss" in json.dumps(x) for x in lines)

    e = runner.invoke(app, ["export-best", str(run)])
    assert e.exit_code == 0, e.output
    best = summary["best_epoch"]
    export = gpt_dir / "exports" / f"voice-e{best}.ckpt"
    assert export.is_file(), e.output
    loaded = torch.load(export, map_location="cpu", weights_only=True)
    assert loaded["info"] == f"GPT-e{best}"
    manifest = json.loads(export.with_name(export.name + ".manifest.json").read_text())
    assert list(loaded["weight"]) == manifest["export_keys"]
    ck = load_run_checkpoint(gpt_dir / "checkpoints" / "best.pt")
    for k, v in ck["decoder"].items():
        assert torch.equal(loaded["weight"][f"model.{k}"], v.half())
    i = runner.invoke(app, ["inspect", str(export)])
    assert i.exit_code == 0 and "GPT (s1) official-export" in i.output, i.output
    c = runner.invoke(app, ["inspect", str(gpt_dir / "checkpoints" / "best.pt")])
    assert c.exit_code == 0 and "GPT (s1) run-checkpoint" in c.output and "(strict): yes" in c.output, (
        c.output
    )


def test_gpt_resume_is_exact_on_cpu(gpt_dataset: Path, tmp_path: Path) -> None:
    from gptsovits_train.train.gpt_stage import GptStage, engine_config
    from gptsovits_train.train.loop import run_stage

    cfg = load_config(CONFIGS / "tiny.yaml", [f"train.dataset={gpt_dataset}", *TINY_GPT, "gpt.epochs=2"])
    straight = tmp_path / "straight"
    run_stage(GptStage(cfg, straight), engine_config(cfg), straight, progress=False)

    first = tmp_path / "resumed"
    one = cfg.model_copy(update={"gpt": cfg.gpt.model_copy(update={"epochs": 1})})
    run_stage(GptStage(one, first), engine_config(one), first, progress=False)
    (first / "summary.json").unlink()
    run_stage(GptStage(cfg, first), engine_config(cfg), first, resume=True, progress=False)

    a = load_run_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_run_checkpoint(first / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for k, v in a["decoder"].items():
        assert torch.equal(v, b["decoder"][k]), k


def test_both_stages_in_one_run_then_resume_skips_them(gpt_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "both"
    args = _args(gpt_dataset, "stages=[sovits, gpt]", "train.epochs=1", "gpt.epochs=1")
    runner = CliRunner()
    r = runner.invoke(app, ["fit", "--run-dir", str(run), "-q", *args])
    assert r.exit_code == 0, r.output
    assert "[sovits] best epoch 1" in r.output and "[gpt] best epoch 1" in r.output
    for stage in ("sovits", "gpt"):
        assert json.loads((run / stage / "summary.json").read_text())["stage"] == stage
    again = runner.invoke(app, ["fit", "--run-dir", str(run), "--resume", "-q", *args])
    assert again.exit_code == 0, again.output
    assert "[sovits] already finished" in again.output and "[gpt] already finished" in again.output
    e = runner.invoke(app, ["export-best", str(run)])
    assert e.exit_code == 0, e.output
    assert (run / "sovits" / "exports").is_dir() and list((run / "sovits" / "exports").glob("both_e1_s*.pth"))
    assert (run / "gpt" / "exports" / "both-e1.ckpt").is_file()


def test_gpt_nan_guard_skips_rolls_back_and_never_keeps_nan_weights(
    gpt_dataset: Path, tmp_path: Path
) -> None:
    import math

    from gptsovits_train.layout import RunLayout
    from gptsovits_train.train.gpt_stage import GptStage, engine_config
    from gptsovits_train.train.loop import StepInfo, run_stage
    from gptsovits_train.train.metrics import read_metrics

    cfg = load_config(
        CONFIGS / "tiny.yaml",
        [f"train.dataset={gpt_dataset}", *TINY_GPT, "gpt.epochs=2", "train.nan_patience=2"],
    )

    def poison(info: StepInfo) -> None:
        if info.step == 6:  # the last batch of epoch 1: epoch 1 ends with NaN weights
            with torch.no_grad():
                info.models["decoder"].ar_predict_layer.weight.fill_(float("nan"))

    run = tmp_path / "nan"
    result = run_stage(GptStage(cfg, run), engine_config(cfg), run, progress=False, on_step=poison)
    layout = RunLayout(run)
    summary = json.loads(layout.summary.read_text())
    events = read_metrics(layout.metrics)
    assert [e["step"] for e in events if e["event"] == "nan_skip"] == [7, 8]
    assert summary["nan_guard"]["rollbacks"] == 1
    (rollback,) = [e for e in events if e["event"] == "nan_rollback"]
    assert rollback["restored_step"] == 0  # epoch 1's NaN weights were never written
    # the rollback lowers the live official LR (0.002 after epoch 1's steps) by nan_lr_factor, for good
    assert rollback["lr/gpt"] == pytest.approx(0.002 * cfg.train.nan_lr_factor)
    assert summary["lr_final"]["gpt"] == pytest.approx(0.002 * cfg.train.nan_lr_factor)
    vals = {e["epoch"]: e for e in events if e["event"] == "val"}
    assert vals[1]["val/loss"] == "nan" and math.isfinite(vals[2]["val/loss"])
    assert result.best_epoch == 2 and summary["reload_matches_best"]
