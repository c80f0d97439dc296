"""What the commands say (issue 12, items 11-16): safe-loader refusals in one line of our own words, the
official size-based version guess explained, each log message once per command, --help defaults and
choices, usage errors, `fit --force`, and the curves plot's title and best-epoch label."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gptsovits_train.checkpoints.version import size_rule_note, version_from_header_and_size
from gptsovits_train.cli import app
from gptsovits_train.layout import RunLayout
from gptsovits_train.logging_setup import OncePerCommand
from gptsovits_train.train.metrics import curves_figure, read_metrics, run_title
from tests.features_helpers import build_tiny_hubert
from tests.fit_helpers import CONFIGS, make_dataset

runner = CliRunner()
TINY = str(CONFIGS / "tiny.yaml")


def flat(output: str) -> str:
    """Help/error text without Rich's box characters and line wrapping."""
    return " ".join(output.replace("│", " ").split())


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds"), n_train=2, n_val=1, max_seconds=1.5)


class _RunsCode:
    """Pickles as a call to os.system (what a malicious weight file holds)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ------------------------------------------------------------------------------ 11. safe-loader messages
@pytest.mark.parametrize("damage", ["truncated", "pickled-code"])
def test_unreadable_last_pt_is_one_line_in_our_words(tmp_path, dataset, damage):
    run = RunLayout(tmp_path / "run" / "sovits")  # the SoVITS stage's folder of the run
    run.ckpt_dir.mkdir(parents=True)
    marker = tmp_path / "ran"
    buf = io.BytesIO()
    torch.save({"format": "gsv-train-checkpoint", "generator": {"w": torch.ones(64, 64)}}, buf)
    if damage == "truncated":
        run.last.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    else:
        torch.save({"format": "gsv-train-checkpoint", "x": _RunsCode(marker)}, run.last)
    args = [
        "fit",
        "-c",
        TINY,
        "--set",
        f"train.dataset={dataset.root}",
        "-r",
        str(tmp_path / "run"),
        "--resume",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 1
    assert "Traceback" not in res.output and "weights_only" not in res.output
    (line,) = error_lines(res.output)
    if damage == "truncated":
        assert "not a checkpoint this tool can safely read" in line
    else:
        assert "refused to load: it references 'posix.system'" in line and "may try to run code" in line
    assert not marker.exists()


def test_malicious_hubert_bin_is_one_line(tmp_path, sample_dir):
    hubert = build_tiny_hubert(tmp_path / "hubert", legacy_bin=True)
    weights = torch.load(hubert / "pytorch_model.bin", weights_only=True)
    marker = tmp_path / "ran"
    weights["payload"] = _RunsCode(marker)
    torch.save(weights, hubert / "pytorch_model.bin")
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.flac").write_bytes((sample_dir / "wavs" / "LJ001-0002.flac").read_bytes())
    (src / "a.txt").write_text("in being comparatively modern.", encoding="utf-8")
    res = runner.invoke(
        app, ["prepare", str(src), "-l", "en", "--hubert", str(hubert), "--out", str(tmp_path / "ds"), "-q"]
    )
    assert res.exit_code == 1
    assert "Traceback" not in res.output and "weights_only" not in res.output
    (line,) = error_lines(res.output)
    assert "pytorch_model.bin: refused to load: it references 'posix.system'" in line
    assert not marker.exists()


# ------------------------------------------------------------------ 12. official size-based detection
def test_size_rule_note_explains_a_misdetected_small_model():
    small = version_from_header_and_size(b"PK\x03\x04", 9_293 * 1024)  # the demo model's export size
    assert small.model_version == "v1" and small.rule.startswith("plain zip")
    note = size_rule_note(small, "v2")
    assert note is not None and "\n" not in note
    assert "from its file size alone" in note and "reads as v1 there" in note
    assert "does not load in the official inference anyway" in note
    # nothing to explain: the size rule agrees, or the version came from a header
    assert size_rule_note(version_from_header_and_size(b"PK\x03\x04", 150 * 2**20), "v2") is None
    assert size_rule_note(version_from_header_and_size(b"05\x03\x04", 1000), "v2") is None


# ------------------------------------------------------------------------------ 13. once per command
def test_each_log_message_once_per_command():
    records = [
        logging.LogRecord("a", logging.INFO, __file__, 1, "model %s differs", ("v2",), None),
        logging.LogRecord("a", logging.INFO, __file__, 2, "model %s differs", ("v2",), None),
        logging.LogRecord("a", logging.INFO, __file__, 3, "model %s differs", ("v1",), None),
        logging.LogRecord("b", logging.INFO, __file__, 4, "model %s differs", ("v2",), None),
    ]
    once = OncePerCommand()
    assert [once.filter(r) for r in records] == [True, False, True, True]
    assert OncePerCommand().filter(records[1])  # a new command starts afresh


def test_random_hubert_prepare_says_it_once(tmp_path, sample_dir):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("LJ001-0002", "LJ001-0008"):
        (src / f"{name}.flac").write_bytes((sample_dir / "wavs" / f"{name}.flac").read_bytes())
        (src / f"{name}.txt").write_text("in being comparatively modern.", encoding="utf-8")
    out = tmp_path / "ds"
    res = runner.invoke(app, ["prepare", str(src), "-l", "en", "--hubert", "random-tiny", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.count("RANDOM HuBERT") == 1
    assert "stand-in" not in res.output and "POS tagger" not in res.output
    res = runner.invoke(
        app, ["prepare", str(src), "-l", "en", "--hubert", "random-tiny", "--out", str(out), "-q"]
    )
    assert res.exit_code == 0 and res.output.count("RANDOM HuBERT") == 1


# ------------------------------------------------------------------------------------ 14. help, usage
def test_fit_usage_errors_exit_2(tmp_path):
    res = runner.invoke(app, ["fit", "-r", str(tmp_path / "r")])
    assert res.exit_code == 2 and "Missing option '--config'" in res.output
    res = runner.invoke(app, ["fit", "-c", TINY, "--set", f"train.dataset={tmp_path / 'nope'}"])
    assert res.exit_code == 2 and "dataset folder not found" in res.output
    res = runner.invoke(app, ["fit", "-c", TINY, "-r", str(tmp_path / "r")])
    assert res.exit_code == 2 and "train.dataset is not set" in res.output
    assert not (tmp_path / "r").exists()


def test_language_lists_only_supported_choices(tmp_path, sample_dir):
    res = runner.invoke(app, ["prepare", "--sample", "--language", "ja", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert "'ja' is not one of auto, zh, en (not supported yet" in flat(res.output)


def _help(*args: str) -> str:
    return runner.invoke(app, [*args, "--help"], env={"COLUMNS": "100", "NO_COLOR": "1"}).output


def test_help_shows_defaults():
    prepare, export, fit = _help("prepare"), _help("export-best"), _help("fit")
    prepare, export, fit = flat(prepare), flat(export), flat(fit)
    assert "[default: (prepare.text.language, en; --sample: en)]" in prepare
    assert "[default: (prepare.features.device, auto)]" in prepare
    assert "[default: (prepare.split.val_ratio, 0.1)]" in prepare
    assert "[default: (the run folder's name)]" in export
    assert "[default: (runs/<config file name>)]" in fit
    assert "zh, en, or auto" in prepare


def test_fit_help_wraps_by_paragraph():
    text = _help("fit").split("╭")[0]  # the description, above the options box
    lines = [line.rstrip() for line in text.splitlines()]
    paragraphs: list[list[str]] = [[]]
    for line in lines[3:]:  # after "Usage: ..."
        if line.strip():
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    body = [p for p in paragraphs if p]
    assert len(body) == 2
    for para in body:
        for line in para[:-1]:  # every line but a paragraph's last one is filled
            assert len(line) > 80, para


# ----------------------------------------------------------------------------------------- 16. --force
def test_fit_force_starts_over(tmp_path, dataset):
    run = tmp_path / "run"
    args = [
        "fit",
        "-c",
        TINY,
        "--set",
        f"train.dataset={dataset.root}",
        "--set",
        "train.epochs=1",
        "-r",
        str(run),
    ]
    assert runner.invoke(app, [*args, "-q"]).exit_code == 0
    (run / "notes.txt").write_text("mine", encoding="utf-8")
    again = runner.invoke(app, [*args, "-q"])
    assert again.exit_code == 1
    (line,) = error_lines(again.output)
    assert "already holds a run" in line and "--force to discard it and start over" in line
    forced = runner.invoke(app, [*args, "-q", "--force"])
    assert forced.exit_code == 0, forced.output
    events = read_metrics(RunLayout(run / "sovits").metrics)
    assert [e["epoch"] for e in events if e["event"] == "val"] == [1]  # one run's events, not two
    assert (run / "notes.txt").read_text(encoding="utf-8") == "mine"


# ------------------------------------------------------------------------------------- 15. curves.png
def _events(n: int, best: int) -> list[dict]:
    events = []
    for epoch in range(1, n + 1):
        events.append({"event": "epoch", "epoch": epoch, "train/mel": 2.0 - 0.1 * epoch, "lr/g": 1e-3})
        val = 1.5 + abs(epoch - best) * 0.05
        events.append({"event": "val", "epoch": epoch, "val/mel": val, "val/recon": val + 0.1})
    return events


@pytest.mark.parametrize("best", [1, 6, 12])
def test_best_label_is_not_under_the_legend_and_title_names_the_run(tmp_path, best):
    run = tmp_path / "demo"
    run.mkdir()
    message = "val/mel did not improve by more than 0.0001 for 3 validation(s) (best 1.54289 at epoch 9)"
    (run / "summary.json").write_text(json.dumps({"stop_reason": "early_stopping", "stop_message": message}))
    title = run_title(run)
    assert title == f"demo: stopped by early_stopping ({message})"
    fig = curves_figure(_events(12, best), best_epoch=best, title=title)
    assert fig is not None
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    ax = fig.axes[0]
    (label,) = [t for t in ax.texts if t.get_text() == f"best: epoch {best}"]
    label_box = label.get_window_extent(renderer)
    (legend,) = fig.legends
    assert not label_box.overlaps(legend.get_window_extent(renderer))
    assert ax.get_window_extent(renderer).contains(label_box.x0, label_box.y0)
    assert ax.get_window_extent(renderer).contains(label_box.x1, label_box.y1)
    assert " ".join(ax.get_title().split()) == title
    title_box = ax.title.get_window_extent(renderer)
    assert title_box.x0 >= 0 and title_box.x1 <= fig.bbox.width  # not cut off at the figure's edges
