"""Dataset report: duration statistics, minutes per split, the summary table and report.png."""

from __future__ import annotations

import pytest

from gptsovits_train.data.manifest import Clip
from gptsovits_train.data.report import PrepareReport, duration_stats, format_summary, write_report_png
from gptsovits_train.data.report_types import Skipped, WarningItem


def clip(cid: str, seconds: float, split: str) -> Clip:
    n = int(seconds * 32000)
    return Clip(cid, f"wavs/{cid}.wav", "/src.wav", 0.0, seconds, seconds, "t", "en", "s", split, n, n // 640)


def test_duration_stats_hand_computed():
    st = duration_stats([4.0, 1.0, 3.0, 2.0])
    assert st == pytest.approx(
        {"min": 1.0, "max": 4.0, "mean": 2.5, "median": 2.5, "p10": 1.3, "p90": 3.7, "total": 10.0}
    )
    assert duration_stats([])["total"] == 0.0


def test_report_dict_and_table(tmp_path):
    rep = PrepareReport(
        out_dir=str(tmp_path),
        slice_only=False,
        clips=[clip("a", 60.0, "train"), clip("b", 30.0, "train"), clip("c", 6.0, "val")],
        skipped=[Skipped("/x.wav", "empty file (0 bytes)")],
        warnings=[WarningItem("/y.wav", "8-bit audio")],
        n_sources=5,
    )
    d = rep.to_dict()
    assert d["clips"] == 3 and d["clips_per_split"] == {"train": 2, "val": 1}
    assert d["minutes"] == pytest.approx({"train": 1.5, "val": 0.1, "total": 1.6})
    assert d["skipped"] == [{"source": "/x.wav", "reason": "empty file (0 bytes)", "stage": "audio"}]
    assert d["warnings_count"] == 1 and d["skipped_count"] == 1
    table = format_summary(rep)
    rows = {
        line.split()[0]: line.split()
        for line in table.splitlines()
        if line[:5] in ("train", "val  ", "total")
    }
    assert rows["train"][1:3] == ["2", "1.50"] and rows["val"][1:3] == ["1", "0.10"]
    assert rows["total"][1:3] == ["3", "1.60"]
    assert "skipped: 1, warnings: 1" in table and "empty file (0 bytes)" in table
    png = write_report_png(tmp_path / "report.png", rep)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
