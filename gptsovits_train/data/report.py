"""Dataset report of `prepare`: `report.json`, `report.png` (duration histogram by split), summary table."""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptsovits_train.data.gpt_view import gpt_report
from gptsovits_train.data.manifest import Clip, write_manifest
from gptsovits_train.data.report_types import Skipped, WarningItem
from gptsovits_train.errors import GsvError
from gptsovits_train.fileio import atomic_path, atomic_write_json
from gptsovits_train.layout import DatasetLayout

LOG = logging.getLogger(__name__)


def duration_stats(durations: list[float]) -> dict[str, float]:
    """min/max/mean/median/p10/p90/total seconds of a list of clip durations (zeros when empty)."""
    if not durations:
        return {k: 0.0 for k in ("min", "max", "mean", "median", "p10", "p90", "total")}
    ordered = sorted(durations)

    def pct(q: float) -> float:
        # linear interpolation between closest ranks
        pos = q * (len(ordered) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    return {
        "min": ordered[0],
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
        "median": statistics.median(ordered),
        "p10": pct(0.10),
        "p90": pct(0.90),
        "total": sum(ordered),
    }


@dataclass
class PrepareReport:
    """Outcome of one `prepare` run (also written as report.json)."""

    out_dir: str
    slice_only: bool
    clips: list[Clip]
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[WarningItem] = field(default_factory=list)
    n_sources: int = 0
    n_sources_reused: int = 0
    audio_seconds_processed: float = 0.0
    wall_seconds: float = 0.0
    stages: list[str] = field(default_factory=list)

    @property
    def n_clips(self) -> int:
        return len(self.clips)

    def split_clips(self, split: str) -> list[Clip]:
        return [c for c in self.clips if c.split == split]

    def minutes(self) -> dict[str, float]:
        out = {s: sum(c.duration for c in self.split_clips(s)) / 60.0 for s in ("train", "val")}
        out["total"] = out["train"] + out["val"]
        return out

    @property
    def n_warnings(self) -> int:
        return len(self.warnings)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "out_dir": self.out_dir,
            "slice_only": self.slice_only,
            "clips": self.n_clips,
            "clips_per_split": {s: len(self.split_clips(s)) for s in ("train", "val")},
            "minutes": self.minutes(),
            "duration_seconds": duration_stats([c.duration for c in self.clips]),
            "duration_seconds_per_split": {
                s: duration_stats([c.duration for c in self.split_clips(s)]) for s in ("train", "val")
            },
            "sources": self.n_sources,
            "sources_reused": self.n_sources_reused,
            "audio_seconds_processed": self.audio_seconds_processed,
            "wall_seconds": self.wall_seconds,
            "stages": self.stages,
            "skipped_count": len(self.skipped),
            "warnings_count": self.n_warnings,
            "skipped": [s.to_dict() for s in self.skipped],
            "warnings": [w.to_dict() for w in self.warnings],
        }
        gpt = gpt_report(self.out_dir, self.clips, self.skipped)  # only for datasets prepared for the GPT
        if gpt is not None:
            out["gpt"] = gpt
        return out


def write_report_json(path: Path | str, report: PrepareReport) -> Path:
    return atomic_write_json(path, report.to_dict())


def write_report_png(path: Path | str, report: PrepareReport) -> Path:
    """Histogram of clip durations, train and val stacked, with the totals in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    train = [c.duration for c in report.split_clips("train")]
    val = [c.duration for c in report.split_clips("val")]
    every = train + val
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if every:
        lo, hi = min(every), max(every)
        bins = 20 if hi > lo else 1
        ax.hist(
            [train, val],
            bins=bins,
            range=(lo, hi if hi > lo else lo + 1.0),
            stacked=True,
            label=[f"train ({len(train)})", f"val ({len(val)})"],
            color=["#4c72b0", "#dd8452"],
        )
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no clips", ha="center", va="center", transform=ax.transAxes)
    m = report.minutes()
    ax.set_title(f"{report.n_clips} clips, {m['train']:.1f} min train / {m['val']:.1f} min val")
    ax.set_xlabel("clip duration (s)")
    ax.set_ylabel("clips")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.13, top=0.9)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_dataset_outputs(
    layout: DatasetLayout, report: PrepareReport, clips: list[Clip], *, empty_message: str
) -> None:
    """Write manifest.jsonl (or remove a stale one when no clip is left), report.json and report.png.

    Raises:
        GsvError: with `empty_message` when no usable clip remains (after the report is written, so the
            reasons stay on disk).
    """
    if clips:
        write_manifest(layout.manifest, clips)
    else:
        layout.manifest.unlink(missing_ok=True)
    write_report_json(layout.report_json, report)
    write_report_png(layout.report_png, report)
    if not clips:
        raise GsvError(empty_message)


def format_summary(report: PrepareReport) -> str:
    """A plain-text table for the terminal."""
    m = report.minutes()
    rows = [("split", "clips", "minutes", "mean s", "min s", "max s")]
    for split in () if report.slice_only else ("train", "val"):  # --slice-only makes no split
        clips = report.split_clips(split)
        st = duration_stats([c.duration for c in clips])
        rows.append(
            (
                split,
                str(len(clips)),
                f"{m[split]:.2f}",
                f"{st['mean']:.2f}",
                f"{st['min']:.2f}",
                f"{st['max']:.2f}",
            )
        )
    st = duration_stats([c.duration for c in report.clips])
    rows.append(
        (
            "clips (no split)" if report.slice_only else "total",
            str(report.n_clips),
            f"{m['total']:.2f}",
            f"{st['mean']:.2f}",
            f"{st['min']:.2f}",
            f"{st['max']:.2f}",
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(
        f"sources: {report.n_sources} ({report.n_sources_reused} reused from a previous run), "
        f"skipped: {len(report.skipped)}, warnings: {report.n_warnings}"
    )
    for item in report.skipped[:10]:
        lines.append(f"  skipped [{item.stage}] {item.source}: {item.reason}")
    if len(report.skipped) > 10:
        lines.append(f"  ... {len(report.skipped) - 10} more in report.json")
    for w in report.warnings[:10]:
        lines.append(f"  warning [{w.stage}] {w.source}: {w.message}")
    if len(report.warnings) > 10:
        lines.append(f"  ... {len(report.warnings) - 10} more in report.json")
    return "\n".join(lines)
