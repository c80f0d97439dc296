"""Run outputs: metrics.jsonl events and rewind, summary NaN handling, curves.png, TensorBoard read-back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gptsovits_train.train.metrics import MetricsLog, plot_curves, read_metrics, write_summary
from gptsovits_train.train.tensorboard import TensorBoardLogger, mel_to_image

SEED_EPOCHS = [1, 3, 5, 7, 9, 11, 13]
SEED_VALUES = [0.72, 0.58, 0.46, 0.41, 0.45, 0.52, 0.61]


def test_metrics_log_and_rewind(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for epoch in (1, 2, 3):
        for s in range(3):
            log.log("step", epoch=epoch, step=(epoch - 1) * 3 + s + 1, **{"loss/g": 1.0})
        log.log("epoch", epoch=epoch, step=epoch * 3, **{"train/mel": 0.5})
        log.log("val", epoch=epoch, step=epoch * 3, **{"val/mel": float("nan") if epoch == 2 else 0.4})
    log.log("final", epoch=3, step=9, **{"val/mel": 0.4})
    events = read_metrics(log.path)
    assert len(events) == 16
    assert events[9]["val/mel"] == "nan"  # JSON has no NaN: written as a string
    dropped = log.rewind(step=6, epoch=2)  # resume from the end of epoch 2
    assert dropped == 6  # epoch 3's 3 steps + epoch + val, and the final
    events = read_metrics(log.path)
    assert max(e["step"] for e in events) == 6
    assert [e["event"] for e in events].count("val") == 2


def test_summary_is_strict_json(tmp_path):
    path = write_summary(
        tmp_path / "summary.json", {"best": {"value": float("inf")}, "x": [1.0, float("nan")]}
    )
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data == {"best": {"value": "inf"}, "x": [1.0, "nan"]}


def test_curves_png(tmp_path):
    events = []
    for epoch in range(1, 14):
        events.append(
            {"event": "epoch", "epoch": epoch, "step": epoch, "train/mel": 1.0 / epoch, "lr/g": 1e-4}
        )
    for epoch, value in zip(SEED_EPOCHS, SEED_VALUES, strict=True):
        events.append(
            {"event": "val", "epoch": epoch, "step": epoch, "val/mel": value, "val/recon": value + 0.1}
        )
    out = plot_curves(events, tmp_path / "curves.png", best_epoch=7)
    assert out is not None and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_curves([], tmp_path / "none.png", best_epoch=None) is None


def test_mel_to_image_orientation():
    mel = np.zeros((4, 5), dtype=np.float32)
    mel[0] = 1.0  # lowest mel bin is the loudest
    img = mel_to_image(mel)
    assert img.shape == (4, 5, 3) and img.dtype == np.uint8
    assert (img[-1] != img[0]).any()  # low bins drawn at the bottom row
    assert (img[-1] == img[-1, 0]).all()


def test_tensorboard_read_back(tmp_path):
    tb = TensorBoardLogger(tmp_path / "tb")
    for step, value in enumerate(SEED_VALUES, start=1):
        tb.scalars({"val/mel": value, "lr/g": 1e-4}, step)
    tb.mel_image("val/mel_0", torch.randn(128, 50), 7)
    wave = torch.sin(torch.linspace(0, 2000, 32000))
    tb.audio("val/audio_0", wave, 7, sample_rate=32000)
    tb.close()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "images": 0, "audio": 0})
    acc.Reload()
    tags = acc.Tags()
    assert set(tags["scalars"]) == {"val/mel", "lr/g"}
    assert [round(e.value, 6) for e in acc.Scalars("val/mel")] == SEED_VALUES
    assert [e.step for e in acc.Scalars("val/mel")] == list(range(1, 8))
    (image,) = acc.Images("val/mel_0")
    assert (image.width, image.height, image.step) == (50, 128, 7)
    (audio,) = acc.Audio("val/audio_0")
    assert audio.sample_rate == 32000 and audio.length_frames == 32000


def test_tensorboard_disabled_writes_nothing(tmp_path):
    tb = TensorBoardLogger(tmp_path / "tb", enabled=False)
    tb.scalars({"a": 1.0}, 1)
    tb.close()
    assert not (tmp_path / "tb").exists()
