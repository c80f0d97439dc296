"""The listening report: report.html + listen/ written after every validation of a real `fit` run, valid and
self-contained, its table equal to metrics.jsonl, its best epoch equal to summary.json's, its audio present
and decodable (the very waveforms the validation produced), rebuilt byte for byte by `gsv-train report`.

The loop, checkpoints and the report run for real on a tiny config; the validation is scripted: its numbers
are fixed and each clip's "generated" audio at epoch E is a sine of a known frequency, so the decoded files
can be checked against an independent expectation.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from gptsovits_train import fileio
from gptsovits_train.cli import app
from gptsovits_train.config import Config, load_config
from gptsovits_train.data.manifest import read_manifest
from gptsovits_train.layout import RunLayout
from gptsovits_train.report.listen import ListenReport
from gptsovits_train.report.listen_files import ListenClip
from gptsovits_train.train.loop import fit
from gptsovits_train.train.metrics import read_metrics
from gptsovits_train.train.stage import ValResult, ValSample
from tests.fit_helpers import CONFIGS, make_dataset
from tests.report_helpers import Page, parse_page, validation_rows

SR = 32000
VALUES = {1: 0.70, 2: 0.50, 3: 0.60, 4: 0.40, 5: 0.45}  # improvements at 1, 2, 4; best epoch 4


def tone_hz(epoch: int, clip: int) -> float:
    return 400.0 + 200.0 * epoch + 50.0 * clip


def tone(epoch: int, clip: int, seconds: float) -> torch.Tensor:
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    return (0.5 * torch.sin(2 * math.pi * tone_hz(epoch, clip) * t)).float()


class ScriptedValidation:
    """Fixed numbers; clip i's audio at epoch E is a sine of `tone_hz(E, i)`. Before each validation it
    records the page on disk (what the previous validations left)."""

    def __init__(self, layout: RunLayout, clip_ids: list[str]) -> None:
        self.layout = layout
        self.clip_ids = clip_ids
        self.pages_seen: dict[int, str | None] = {}
        self.on_call: dict[int, object] = {}

    def __call__(self, generator: torch.nn.Module, epoch: int, *, final: bool) -> ValResult:
        if not final:
            page = self.layout.report_html
            self.pages_seen[epoch] = page.read_text(encoding="utf-8") if page.is_file() else None
            action = self.on_call.get(epoch)
            if callable(action):
                action()
        value = VALUES[epoch]
        metrics = {"val/mel": value, "val/recon": value / 2, "val/kl": 1.0, "val/total": 45 * value / 2 + 1}
        samples = [
            ValSample(cid, tone(epoch, i, 0.5 + 0.25 * i), torch.zeros(4, 3), torch.zeros(4, 3), index=i)
            for i, cid in enumerate(self.clip_ids)
        ]
        return ValResult(metrics=metrics, n_clips=len(self.clip_ids), samples=samples, sample_rate=SR)


def setup_run(tmp_path: Path, *overrides: str) -> tuple[Config, RunLayout, ScriptedValidation, list[str]]:
    """1 train + 3 val clips, the tiny config (5 epochs of 1 step, 2 report clips), a scripted validation."""
    ds = make_dataset(tmp_path / "ds", n_train=1, n_val=3, max_seconds=1.0)
    val_ids = [c.id for c in read_manifest(ds.manifest) if c.split == "val"]
    cfg = load_config(
        CONFIGS / "tiny.yaml",
        [
            f"train.dataset={ds.root}",
            "train.epochs=5",
            "model.segment_size=1280",
            "train.batch_size=1",
            "train.min_items_per_epoch=1",  # one step per epoch
            "train.listen_clips=2",
            *overrides,
        ],
    )
    layout = RunLayout(tmp_path / "run")
    return cfg, layout, ScriptedValidation(layout, val_ids), val_ids


def dominant_hz(wave: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum) * SR / len(wave))


def audio_sources(page: Page) -> list[str]:
    return [e.attrs["src"] for e in page.find("audio")]


def test_live_report_follows_the_run(tmp_path):
    cfg, layout, scripted, val_ids = setup_run(tmp_path)
    result = fit(cfg, layout.root, progress=False, validate_fn=scripted)
    assert result.best_epoch == 4

    # after every validation the page held exactly the validations so far (seen at the next validation)
    for epoch in range(2, 6):
        page = parse_page(scripted.pages_seen[epoch] or "")
        assert [r["epoch"] for r in validation_rows(page)] == list(range(1, epoch))
        assert {f"listen/epoch_{e:04d}/{cid}.ogg" for e in range(1, epoch) for cid in val_ids[:2]} <= set(
            audio_sources(page)
        )
        assert "in progress" in (scripted.pages_seen[epoch] or "")
    assert scripted.pages_seen[1] is not None  # the first page exists before any validation
    assert validation_rows(parse_page(scripted.pages_seen[1] or "")) == []

    text = layout.report_html.read_text(encoding="utf-8")
    page = parse_page(text)
    summary = json.loads(layout.summary.read_text())
    assert "finished: max_epochs" in text

    # self-contained: no external asset; the curves are an embedded PNG
    for element in page.elements:
        for attr in ("src", "href"):
            ref = element.attrs.get(attr, "")
            assert not ref.startswith(("http:", "https:", "//", "/")), ref
    (img,) = page.find("img")
    assert img.attrs["src"].startswith("data:image/png;base64,iVBORw0KGgo")

    # the table equals metrics.jsonl's val events, value for value; the best row is summary.json's epoch
    vals = [e for e in read_metrics(layout.metrics) if e["event"] == "val"]
    rows = validation_rows(page)
    assert [r["epoch"] for r in rows] == [e["epoch"] for e in vals] == [1, 2, 3, 4, 5]
    for row, ev in zip(rows, vals, strict=True):
        assert {k: json.loads(str(v)) for k, v in dict(row["values"]).items()} == {  # type: ignore[arg-type]
            k: v for k, v in ev.items() if k.startswith("val/")
        }
    assert [r["epoch"] for r in rows if r["best"]] == [summary["best_epoch"]] == [4]
    # improvements against the previous best are shown (hand-computed: 0.5-0.7, 0.4-0.5; 0.6-0.5, 0.45-0.4)
    assert [r["change"] for r in rows] == [
        "first best",
        "new best, -0.2",
        "+0.1",
        "new best, -0.1",
        "+0.05",
    ]
    # the grid marks the same epoch, and repeats its column right after the real clip
    best_cols = [int(e.attrs["data-epoch"]) for e in page.find("th") if "best" in e.classes]
    assert best_cols == [4]
    headers = [e for e in page.find("th") if e.inside("table", id="listen") and "data-epoch" in e.attrs]
    assert [int(e.attrs["data-epoch"]) for e in headers] == [4, 1, 2, 3, 4, 5] and "pin" in headers[0].classes

    # every referenced audio file exists and decodes; generated ones are the validation's own waveforms
    sources = audio_sources(page)
    assert len(sources) == 2 * (1 + 1 + 5)  # 2 clips x (real, best epoch, 5 epochs)
    for src in sources:
        wave, sr = sf.read(layout.root / src, dtype="float32")
        assert sr == SR and len(wave) > 0
    assert len(list(layout.ckpt_dir.glob("epoch_*.pt"))) == 2  # checkpoints pruned to the top 2; audio kept
    for epoch in range(1, 6):
        for i, cid in enumerate(val_ids[:2]):
            wave, _ = sf.read(layout.listen_sample(epoch, cid, "ogg"), dtype="float32")
            assert abs(len(wave) - int((0.5 + 0.25 * i) * SR)) < 0.01 * SR
            assert dominant_hz(wave) == pytest.approx(tone_hz(epoch, i), abs=5)
    # the real clips are the dataset's recordings (1.0 s each), and only the first 2 validation clips
    for cid in val_ids[:2]:
        real, _ = sf.read(layout.listen_real(cid, "ogg"), dtype="float32")
        original, _ = sf.read(tmp_path / "ds" / "wavs" / f"{cid}.wav", dtype="float32")
        assert abs(len(real) - len(original)) < 0.01 * SR
        assert np.corrcoef(real[: len(original) - 2000], original[: len(original) - 2000])[0, 1] > 0.95
    assert not any(val_ids[2] in src for src in sources)

    # a rebuild from the files alone gives the live page, byte for byte
    live = layout.report_html.read_bytes()
    layout.report_html.unlink()
    out = CliRunner().invoke(app, ["report", str(layout.root)])
    assert out.exit_code == 0, out.output
    assert layout.report_html.read_bytes() == live


def test_wav_format_holds_the_samples(tmp_path):
    cfg, layout, scripted, val_ids = setup_run(
        tmp_path, "train.epochs=2", "train.listen_clips=1", "train.listen_format=wav"
    )
    fit(cfg, layout.root, progress=False, validate_fn=scripted)
    page = parse_page(layout.report_html.read_text(encoding="utf-8"))
    assert audio_sources(page) == [f"listen/real/{val_ids[0]}.wav"] + [
        f"listen/epoch_{e:04d}/{val_ids[0]}.wav"
        for e in (2, 1, 2)  # best (epoch 2) first
    ]
    for epoch in (1, 2):
        path = layout.listen_sample(epoch, val_ids[0], "wav")
        info = sf.info(path)
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", SR, 1)
        # 16-bit: the sine comes back within half a quantisation step; 44-byte header + 2 bytes a sample
        wave, _ = sf.read(path, dtype="float32")
        np.testing.assert_allclose(wave, tone(epoch, 0, 0.5).numpy(), atol=1 / 32768)
        assert path.stat().st_size == 44 + 2 * int(0.5 * SR)


def test_a_failed_page_write_keeps_the_previous_page_and_the_run(tmp_path, monkeypatch, caplog):
    cfg, layout, scripted, _ = setup_run(tmp_path)
    real_replace = os.replace
    disk_full = {"on": False}

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if disk_full["on"] and Path(dst).name == "report.html":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", replace)
    scripted.on_call = {3: lambda: disk_full.update(on=True), 4: lambda: disk_full.update(on=False)}
    with caplog.at_level(logging.WARNING):
        result = fit(cfg, layout.root, progress=False, validate_fn=scripted)
    assert result.stop_reason == "max_epochs"
    # the write after epoch 3's validation failed: epoch 4 found epoch 2's page, whole
    assert scripted.pages_seen[4] == scripted.pages_seen[3]
    assert [r["epoch"] for r in validation_rows(parse_page(scripted.pages_seen[4] or ""))] == [1, 2]
    assert any("listening report not updated at epoch 3" in r.getMessage() for r in caplog.records)
    assert not list(layout.root.glob(".report.html.tmp-*"))  # no half-written file left behind
    # the run went on, and the final page has every validation
    assert [r["epoch"] for r in validation_rows(parse_page(layout.report_html.read_text()))] == [
        1,
        2,
        3,
        4,
        5,
    ]


def write_run(root: Path, vals: list[tuple[int, float, bool]], *, summary_steps: int | None) -> RunLayout:
    """A hand-made run folder: one epoch + val event per (epoch, val/mel, improved), step = epoch (NaN is
    logged as the string "nan", as `MetricsLog` does)."""
    layout = RunLayout(root)
    root.mkdir(parents=True)
    lines = [{"event": "start", "epoch": 0, "step": 0, "device": "cpu", "precision": "fp32", "time": 0.0}]
    best_epoch = None
    for epoch, value, improved in vals:
        best_epoch = epoch if improved else best_epoch
        lines.append(
            {
                "event": "epoch",
                "epoch": epoch,
                "step": epoch,
                "train/mel": 1.0,
                "lr/g": 1e-4,
                "time": 60.0 * epoch,
            }
        )
        lines.append(
            {
                "event": "val",
                "epoch": epoch,
                "step": epoch,
                "val/mel": value if math.isfinite(value) else str(value),
                "improved": improved,
                "best_epoch": best_epoch,
                "time": 60.0 * epoch + 5,
            }
        )
    layout.metrics.write_text("".join(json.dumps(x) + "\n" for x in lines))
    if summary_steps is not None:
        layout.summary.write_text(
            json.dumps(
                {
                    "steps": summary_steps,
                    "best_epoch": 1,
                    "best_value": vals[0][1],
                    "stop_reason": "interrupted",
                    "stop_message": "SIGINT",
                }
            )
        )
    return layout


def test_rebuild_of_an_interrupted_older_run(tmp_path):
    # no config, no listen/ (an older run), and a summary.json of an earlier attempt (the run was resumed
    # and stopped hard after two more validations): that summary is not this page's ending
    layout = write_run(
        tmp_path / "run", [(1, 0.5, True), (2, 0.3, True), (3, float("nan"), False)], summary_steps=1
    )
    out = CliRunner().invoke(app, ["report", str(layout.root)])
    assert out.exit_code == 0, out.output
    text = layout.report_html.read_text()
    page = parse_page(text)
    rows = validation_rows(page)
    assert [(r["epoch"], r["best"]) for r in rows] == [
        (1, False),
        (2, True),
        (3, False),
    ]  # the last val's best
    assert rows[2]["values"] == {"val/mel": '"nan"'}
    assert "in progress: last validation after epoch 3" in text and "interrupted" not in text
    assert page.find("audio") == [] and "No audio for this run" in text
    # with its summary current, the page says how the run ended and marks the summary's best epoch
    layout.summary.write_text(
        json.dumps(
            {
                "steps": 3,
                "best_epoch": 1,
                "stop_reason": "interrupted",
                "stop_message": "SIGINT during epoch 4",
            }
        )
    )
    CliRunner().invoke(app, ["report", str(layout.root)])
    rows = validation_rows(parse_page(layout.report_html.read_text()))
    assert [r["epoch"] for r in rows if r["best"]] == [1]
    assert "finished: interrupted (SIGINT during epoch 4)" in layout.report_html.read_text()


def test_clip_text_is_escaped_and_missing_audio_is_marked(tmp_path):
    layout = write_run(tmp_path / "run", [(1, 0.5, True), (2, 0.4, True)], summary_steps=None)
    real = tmp_path / "real.wav"
    sf.write(real, np.zeros(SR // 2, dtype=np.float32), SR, subtype="PCM_16")
    clips = [
        ListenClip("a&b", 'he said "<b>hi</b>" & left', real),
        ListenClip("gone", "x", tmp_path / "no.wav"),
    ]
    report = ListenReport(
        layout, stage="SoVITS", clips=clips, sampling_rate=SR, audio_format="ogg", run_info={"dataset": "d"}
    )
    report.start()
    report.add_validation(
        2, [("a&b", np.zeros(SR // 4, dtype=np.float32)), ("not-a-report-clip", np.zeros(9))]
    )
    text = layout.report_html.read_text()
    page = parse_page(text)
    assert "he said &quot;&lt;b&gt;hi&lt;/b&gt;&quot; &amp; left" in text and "<b>hi" not in text
    # a&b: real + epoch 2 (epoch 1 has no file: marked "—"); "gone": its real clip was unreadable
    assert audio_sources(page) == ["listen/real/a%26b.ogg"] + ["listen/epoch_0002/a%26b.ogg"] * 2  # best, 2
    assert (layout.listen_dir / "real" / "a&b.ogg").is_file()
    assert "unavailable" in text
    assert not list(layout.listen_dir.rglob("not-a-report-clip*"))


def test_report_command_errors(tmp_path):
    runner = CliRunner()
    out = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert out.exit_code == 2 and "not a folder" in " ".join(out.output.replace("│", " ").split())
    out = runner.invoke(app, ["report", str(tmp_path)])
    assert out.exit_code == 1 and "no metrics.jsonl" in out.output
