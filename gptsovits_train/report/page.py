"""`RUN_DIR/report.html`: one self-contained static page per run, built from the run's files alone.

Inputs (every one optional except `metrics.jsonl`): `config.yaml`, `metrics.jsonl` (its `val`, `epoch`,
`start` and `final` events), `summary.json`, `listen/listen.json` and the audio under `listen/`. The page:

- the run: stage, run folder, config digest, dataset size, device/precision, status or stop reason, the best
  epoch and value, and the value after reloading the best weights;
- the curves (the figure of `curves.png`, embedded as base64 PNG);
- a table of every validation: epoch, step, every `val/*` metric, learning rate(s), wall time, the change
  against the previous best; the best row highlighted;
- a grid of players, clips x validated epochs (the real clip first, the best epoch's column marked), with
  each clip's text; audio is referenced relative to the page (`listen/...`), so the run folder can be moved.

The page holds no time stamp and no state of its own: the same files always give the same bytes, which is
what lets `gsv-train report RUN_DIR` rebuild the live page exactly. `summary.json` is only used when it
belongs to the validations on the page (its `steps` reach the last validation's step), so a resumed run's
page does not show the previous attempt's ending.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from gptsovits_train.errors import GsvError
from gptsovits_train.fileio import atomic_write_text
from gptsovits_train.layout import RunLayout
from gptsovits_train.report.listen_files import ListenIndex
from gptsovits_train.train.metrics import plot_curves, read_metrics, run_title

LOG = logging.getLogger(__name__)

DEFAULT_MONITOR = "val/mel"
#: How the page names a stage (`Stage.name` -> title); other names are shown as they are.
STAGE_TITLES = {"sovits": "SoVITS", "gpt": "GPT"}


@dataclass
class ValRow:
    """One validation of the table."""

    epoch: int
    step: int
    metrics: dict[str, Any]  # every val/* value as logged (floats; "nan"/"inf" strings)
    lrs: dict[str, Any]
    time_s: float | None
    improved: bool


@dataclass
class RunFiles:
    """Everything the page shows, read from a run folder."""

    layout: RunLayout
    config: dict[str, Any]
    events: list[dict[str, Any]]
    summary: dict[str, Any] | None
    index: ListenIndex | None
    monitor: str
    rows: list[ValRow] = field(default_factory=list)

    @property
    def best_epoch(self) -> int | None:
        """summary.json's best epoch, or else the best epoch the last validation recorded."""
        if self.summary is not None:
            best = self.summary.get("best_epoch")
            return int(best) if best is not None else None
        vals = [e for e in self.events if e["event"] == "val" and e.get("best_epoch") is not None]
        return int(vals[-1]["best_epoch"]) if vals else None


def _number(value: Any) -> float:
    """A logged number as float (NaN/Inf were logged as strings); anything else is NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    number = _number(value)
    if not math.isfinite(number):
        return str(value)
    return f"{number:.6g}"


def _fmt_time(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    total = round(seconds)
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GsvError(f"{path}: unreadable ({exc})") from None


def read_run(run_dir: Path | str) -> RunFiles:
    """Read what the page needs from a run folder (GsvError when it is not one)."""
    layout = RunLayout(Path(run_dir))
    if not layout.metrics.is_file():
        raise GsvError(f"{layout.root}: no metrics.jsonl, not a run folder made by `gsv-train fit`")
    try:
        events = read_metrics(layout.metrics)
    except (OSError, ValueError) as exc:
        raise GsvError(f"{layout.metrics}: unreadable ({exc})") from None
    config: dict[str, Any] = {}
    if layout.config.is_file():
        try:
            config = yaml.safe_load(layout.config.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise GsvError(f"{layout.config}: unreadable ({exc})") from None
    monitor = str(config.get("train", {}).get("early_stopping", {}).get("monitor", DEFAULT_MONITOR))

    # Validations: the last event per epoch (a resumed run's rewind already dropped repeats).
    by_epoch: dict[int, dict[str, Any]] = {}
    for ev in events:
        if ev.get("event") == "val":
            by_epoch[int(ev["epoch"])] = ev
    epoch_lrs = {
        int(ev["epoch"]): {k: v for k, v in ev.items() if k.startswith("lr")}
        for ev in events
        if ev.get("event") == "epoch"
    }
    rows = [
        ValRow(
            epoch=epoch,
            step=int(ev.get("step", 0)),
            metrics={k: v for k, v in ev.items() if k.startswith("val/")},
            lrs={k: v for k, v in ev.items() if k.startswith("lr")} or epoch_lrs.get(epoch, {}),
            time_s=_number(ev["time"]) if "time" in ev else None,
            improved=bool(ev.get("improved", False)),
        )
        for epoch, ev in sorted(by_epoch.items())
    ]

    summary = None
    if layout.summary.is_file():
        summary = _read_json(layout.summary)
        last_step = max((r.step for r in rows), default=0)
        if int(summary.get("steps", 0)) < last_step:
            summary = None  # an earlier attempt's summary (the run was resumed since)
    index = ListenIndex.read(layout.listen_index) if layout.listen_index.is_file() else None
    return RunFiles(layout, config, events, summary, index, monitor, rows)


# ------------------------------------------------------------------------------------------- render
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.2em 1.6em;color:#1d1d1f}
h1{font-size:1.45em;margin:0 0 .15em}h2{font-size:1.15em;margin:1.5em 0 .5em;border-bottom:1px solid #ddd}
.sub{color:#666;margin:0 0 1em}table{border-collapse:collapse}
th,td{padding:3px 9px;border:1px solid #ddd;text-align:right;vertical-align:top}
th{background:#f3f4f6;font-weight:600}.l{text-align:left}
table.facts td,table.facts th{border:none;text-align:left;padding:1px 14px 1px 0;background:none}
tr.best td{background:#fff1b8;font-weight:600}.better{color:#067d2c}.worse{color:#b42318}
td.mon,th.mon{background:#eef4ff}tr.best td.mon{background:#ffe58a}
.wrap{overflow-x:auto}.grid td,.grid th{text-align:center}.grid td.clip{text-align:left;min-width:16em;
max-width:26em}.grid th.best,.grid td.best,.grid .pin{background:#fff1b8}
.grid .pin{border-right:3px solid #e0b400}.grid audio{width:180px;height:34px}
.id{font-family:ui-monospace,monospace;font-size:.9em;color:#555}.none{color:#999}
img.curves{max-width:100%;height:auto;border:1px solid #eee}
"""


def _stage_title(name: str) -> str:
    return STAGE_TITLES.get(name, name)


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _curves_png(files: RunFiles) -> bytes | None:
    """The figure of curves.png (same function, same inputs), rendered to bytes."""
    with tempfile.TemporaryDirectory(prefix="gsv-report-") as tmp:
        out = plot_curves(
            files.events,
            Path(tmp) / "curves.png",
            best_epoch=files.best_epoch,
            title=run_title(files.layout.root),  # the run's title, not the temporary folder's
        )
        return out.read_bytes() if out is not None else None


def _facts(files: RunFiles) -> list[tuple[str, str]]:
    s, info = files.summary, files.index.run_info if files.index else {}
    cfg_train = files.config.get("train", {})
    start = next((e for e in files.events if e.get("event") == "start"), {})
    facts: list[tuple[str, str]] = [("run folder", files.layout.root.name)]
    if files.index is not None:
        facts.append(("stage", _stage_title(files.index.stage)))
    if files.config:
        digest = s.get("config_digest") if s else None
        facts.append(("config", "config.yaml" + (f" (sha256 {str(digest)[:12]})" if digest else "")))
    dataset = (s or {}).get("dataset") or info.get("dataset") or cfg_train.get("dataset")
    if isinstance(dataset, dict):  # the stage's dataset summary
        dataset = (
            f"{dataset.get('path', '?')}: {dataset.get('train_clips', '?')} training clips "
            f"({_fmt(dataset.get('train_minutes'))} min), {dataset.get('val_clips', '?')} validation clips"
        )
    if dataset:
        facts.append(("dataset", str(dataset)))
    device = (s or {}).get("device") or info.get("device") or start.get("device")
    precision = (s or {}).get("precision") or info.get("precision") or start.get("precision")
    if device or precision:
        facts.append(("device / precision", f"{device or '?'} / {precision or '?'}"))
    best = files.best_epoch
    best_row = next((r for r in files.rows if r.epoch == best), None)
    if s is not None:
        facts.append(("status", f"finished: {s.get('stop_reason', '?')} ({s.get('stop_message', '')})"))
        facts.append(
            (
                "length",
                f"{s.get('epochs_completed', '?')} epochs, {s.get('steps', '?')} steps, "
                f"{_fmt_time(_number(s.get('wall_time_s')))} wall time",
            )
        )
    elif files.rows:
        facts.append(("status", f"in progress: last validation after epoch {files.rows[-1].epoch}"))
    else:
        facts.append(("status", "in progress: no validation yet"))
    if best is not None:
        value = s.get("best_value") if s else (best_row.metrics.get(files.monitor) if best_row else None)
        facts.append(("best epoch", f"{best}: {files.monitor} {_fmt(value)}"))
    if s is not None and s.get("val_after_reload_value") is not None:
        after, recorded = s["val_after_reload_value"], s.get("best_value")
        same = _number(after) == _number(recorded)
        verdict = "equal to the recorded best" if same else f"differs from the recorded best {_fmt(recorded)}"
        facts.append(("after reloading the best weights", f"{files.monitor} {_fmt(after)} ({verdict})"))
    return facts


def _table(files: RunFiles) -> str:
    if not files.rows:
        return '<p class="none">No validation has finished yet.</p>'
    metric_keys: list[str] = []
    lr_keys: list[str] = []
    for row in files.rows:
        metric_keys += [k for k in row.metrics if k not in metric_keys]
        lr_keys += [k for k in row.lrs if k not in lr_keys]
    if files.monitor in metric_keys:  # the monitored metric first
        metric_keys.remove(files.monitor)
        metric_keys.insert(0, files.monitor)
    head = "".join(
        f"<th{' class=mon' if k == files.monitor else ''}>{_e(k)}</th>" for k in metric_keys
    ) + "".join(f"<th>{_e(k)}</th>" for k in lr_keys)
    out = [
        '<table class="vals" id="validations"><thead><tr><th>epoch</th><th>step</th>'
        f'{head}<th>wall time</th><th class="l">vs. previous best</th></tr></thead><tbody>'
    ]
    best_epoch, prev_best = files.best_epoch, math.nan
    for row in files.rows:
        value = _number(row.metrics.get(files.monitor))
        if row.improved and not math.isfinite(prev_best):
            change = '<span class="better">first best</span>'
        elif row.improved:
            change = f'<span class="better">new best, {value - prev_best:+.4g}</span>'
        elif math.isfinite(prev_best) and math.isfinite(value):
            change = f'<span class="worse">{value - prev_best:+.4g}</span>'
        else:
            change = "—"
        if row.improved:
            prev_best = value
        cells = [f"<td>{row.epoch}</td><td>{row.step}</td>"]
        for k in metric_keys:
            v = row.metrics.get(k)
            cls = ' class="mon"' if k == files.monitor else ""
            data = f'data-key="{_e(k)}" data-value="{_e(json.dumps(v))}"'
            cells.append(f"<td{cls} {data}>{_e(_fmt(v))}</td>")
        cells += [f'<td data-key="{_e(k)}">{_e(_fmt(row.lrs.get(k)))}</td>' for k in lr_keys]
        cells.append(f'<td>{_fmt_time(row.time_s)}</td><td class="l change">{change}</td>')
        cls = ' class="best"' if row.epoch == best_epoch else ""
        out.append(f'<tr{cls} data-epoch="{row.epoch}">{"".join(cells)}</tr>')
    out.append("</tbody></table>")
    return "".join(out)


def _audio(rel: str) -> str:
    return f'<audio controls preload="metadata" src="{_e(quote(rel))}"></audio>'


def _grid(files: RunFiles) -> str:
    """Clips x epochs; the best epoch's column is marked, and repeated right after the real clip."""
    index = files.index
    if index is None or not index.clips:
        return '<p class="none">No audio for this run (train.listen_clips = 0, or an older run).</p>'
    best = files.best_epoch
    # (epoch, css class, header) of each generated-audio column
    columns = [
        (
            r.epoch,
            "best" if r.epoch == best else "",
            f"epoch {r.epoch}" + ("<br>★ best" if r.epoch == best else ""),
        )
        for r in files.rows
    ]
    if best is not None and len(columns) > 1 and any(c[0] == best for c in columns):
        columns.insert(0, (best, "pin", f"★ best<br>(epoch {best})"))
    head = ['<th class="l">clip</th><th>real</th>']
    head += [
        f'<th class="{f"ep {cls}".strip()}" data-epoch="{epoch}">{label}</th>'
        for epoch, cls, label in columns
    ]
    out = ['<div class="wrap"><table class="grid" id="listen"><thead><tr>', *head, "</tr></thead><tbody>"]
    for clip in index.clips:
        cid = str(clip["id"])
        duration = f", {clip['duration']:.1f} s" if clip.get("duration") is not None else ""
        text = _e(clip.get("text", ""))
        cells = [f'<td class="clip"><span class="id">{_e(cid)}{duration}</span><br>{text}</td>']
        real = clip.get("real")
        cells.append(f"<td>{_audio(real)}</td>" if real else '<td class="none">unavailable</td>')
        for epoch, cls, _ in columns:
            path = files.layout.listen_sample(epoch, cid, index.audio_format)
            player = _audio(path.relative_to(files.layout.root).as_posix()) if path.is_file() else "—"
            mark = f' class="{cls}"' if cls else ""
            cells.append(f'<td{mark} data-epoch="{epoch}">{player}</td>')
        out.append(f'<tr data-clip="{_e(cid)}">{"".join(cells)}</tr>')
    out.append("</tbody></table></div>")
    return "".join(out)


def render_report(files: RunFiles) -> str:
    """The page's HTML (deterministic: no time stamps)."""
    title = f"gsv-train report: {files.layout.root.name}"
    stage = f"{_stage_title(files.index.stage)} " if files.index else ""
    facts = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in _facts(files))
    png = _curves_png(files)
    curves = (
        f'<img class="curves" alt="training and validation curves" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
        if png is not None
        else '<p class="none">No finished epoch yet.</p>'
    )
    best = files.best_epoch
    best_note = f" The best epoch ({best}) is highlighted." if best is not None else ""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style></head><body>\n"
        f"<h1>{_e(title)}</h1>\n"
        f'<p class="sub">{_e(stage)}training run; every validated epoch, heard and measured.{best_note}</p>\n'
        f'<h2>Run</h2><table class="facts">{facts}</table>\n'
        f"<h2>Curves</h2>{curves}\n"
        f"<h2>Validations</h2>{_table(files)}\n"
        "<h2>Listen</h2>"
        '<p class="sub">The same validation clips at every validated epoch, through the inference path; '
        "the real recording first.</p>"
        f"{_grid(files)}\n"
        "</body></html>\n"
    )


def build_report(run_dir: Path | str) -> Path:
    """(Re)write `RUN_DIR/report.html` from the run's files; returns its path."""
    files = read_run(run_dir)
    return atomic_write_text(files.layout.report_html, render_report(files))
