"""The README demo chain on the embedded sample, through the CLI: prepare -> fit -> export-best -> inspect.

Uses the real 12 LJSpeech clips, real phonemes, the random-tiny HuBERT of configs/demo.yaml for features,
and the tiny model of configs/tiny.yaml (CPU, well under a minute for the fit).
"""

from __future__ import annotations

import json
from pathlib import Path

import soundfile as sf
import torch
from typer.testing import CliRunner

from gptsovits_train.checkpoints.version import detect_sovits_version
from gptsovits_train.cli import app
from gptsovits_train.data.manifest import read_manifest
from gptsovits_train.layout import DatasetLayout, RunLayout

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_prepare_fit_export_inspect_on_the_embedded_sample(tmp_path, monkeypatch):
    monkeypatch.setenv("GSV_TRAIN_PRETRAINED", str(tmp_path / "no-pretrained"))
    data, run = tmp_path / "data", tmp_path / "run"

    r = runner.invoke(
        app, ["prepare", "--sample", "--config", str(REPO / "configs/demo.yaml"), "--out", str(data), "-q"]
    )
    assert r.exit_code == 0, r.output
    clips = read_manifest(DatasetLayout(data).manifest)
    assert len(clips) == 12 and all(c.ssl and c.phone_ids for c in clips)
    n_val = sum(c.split == "val" for c in clips)
    assert n_val == 9  # demo.yaml holds out floor(12 * 0.75 + 0.5) = 9 clips to show overfitting

    r = runner.invoke(
        app,
        [
            "fit",
            "--config",
            str(REPO / "configs/tiny.yaml"),
            "--set",
            f"train.dataset={data}",
            "--set",
            "train.epochs=2",
            "--run-dir",
            str(run),
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    layout = RunLayout(run / "sovits")  # each stage trains in its own subfolder
    summary = json.loads(layout.summary.read_text())
    assert summary["stop_reason"] == "max_epochs" and summary["epochs_completed"] == 2
    assert summary["dataset"]["train_clips"] == 3 and summary["dataset"]["val_clips"] == 9
    # The final validation after reloading best.pt reproduces the recorded best exactly.
    assert summary["reload_matches_best"] is True
    assert summary["val_after_reload_value"] == summary["best_value"]
    best = torch.load(layout.best, weights_only=True)
    assert best["epoch"] == summary["best_epoch"]
    # The listening report: the one validation clip, real and generated at both validated epochs (the real
    # validation's inference-path audio, as long as the clip's frame-aligned length), best epoch marked.
    report = layout.report_html.read_text(encoding="utf-8")
    heard = [c for c in clips if c.split == "val" and layout.listen_sample(1, c.id, "ogg").is_file()]
    assert len(heard) == 3  # train.listen_clips (default 3) of the 9 validation clips
    assert f'<th class="ep best" data-epoch="{summary["best_epoch"]}">' in report
    for val_clip in heard:
        for epoch in (1, 2):
            audio, sr = sf.read(layout.listen_sample(epoch, val_clip.id, "ogg"), dtype="float32")
            assert sr == 32000 and abs(len(audio) - 2 * (val_clip.n_frames // 2) * 640) < 0.01 * sr
            assert f"listen/epoch_{epoch:04d}/{val_clip.id}.ogg" in report

    r = runner.invoke(app, ["export-best", str(run), "--name", "demo"])
    assert r.exit_code == 0, r.output
    exports = sorted(layout.exports_dir.glob("demo_e*_s*.pth"))
    assert [p.name for p in exports] == [f"demo_e{best['epoch']}_s{best['step']}.pth"]
    exported = torch.load(exports[0], weights_only=True)
    assert set(exported) == {"weight", "config", "info"}
    assert not any("enc_q" in k for k in exported["weight"])
    assert all(v.dtype == torch.float16 for v in exported["weight"].values() if v.is_floating_point())
    # A tiny model is far below the official v1/v2 size threshold; inspect must say how it is detected.
    assert detect_sovits_version(exports[0]).model_version == "v1"
    # ... and explain it once, in one line (item 12); the model-size notice is printed once (item 13)
    assert r.output.count("note: the official loader guesses a plain zip's version from its file size") == 1
    assert r.output.count("not the official v2 model size") <= 1

    r = runner.invoke(app, ["inspect", str(exports[0])])
    assert r.exit_code == 0, r.output
    assert "loads into our generator (strict): yes" in r.output
    assert r.output.count("note:        the official loader guesses") == 1
    assert r.output.count("not the official v2 model size") <= 1
