"""What a run leaves behind besides checkpoints: `metrics.jsonl`, `summary.json` and `curves.png`.

`metrics.jsonl` holds one JSON object per line, each with an `event`:

- `step`: every `train.log_every` optimizer steps — the step's losses (`loss/d`, `loss/g`, `loss/mel`, ...),
  learning rates and gradient norms;
- `epoch`: end of every epoch — epoch means of the training losses (`train/mel`, ...), lrs, skipped steps;
- `val`: every validation — `val/mel`, `val/recon`, `val/kl`, `val/total`, whether it improved, the best so
  far and the patience left;
- `nan_skip` / `nan_rollback`: the NaN guard acted;
- `final`: the validation after the best weights were reloaded at the end of the run.

Every event carries `epoch`, `step` and `time` (seconds since the run started, summed over resumes).
"""

from __future__ import annotations

import json
import logging
import math
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gptsovits_train.fileio import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    naming_write_failures,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LOG = logging.getLogger(__name__)


def _jsonable(value: Any) -> Any:
    """Floats that JSON cannot hold (NaN/Inf) become strings ("nan", "inf"); everything else is kept."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class MetricsLog:
    """Appends events to `metrics.jsonl` (one line each, flushed at once)."""

    def __init__(self, path: Path | str, *, enabled: bool = True, time_offset: float = 0.0) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._t0 = time.monotonic() - time_offset  # `time` continues across resumes

    def log(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, **_jsonable(fields), "time": round(time.monotonic() - self._t0, 3)}
        if self.enabled:
            with naming_write_failures(self.path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        return record

    def rewind(self, step: int, epoch: int) -> int:
        """Drop events logged after a checkpoint (`step` steps into the run, epoch `epoch` finished or
        interrupted) so that a resumed run does not repeat them. Returns the number of dropped events."""
        if not self.enabled or not self.path.is_file():
            return 0
        kept, dropped = [], 0
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            after = rec.get("step", 0) > step or (
                rec.get("event") in ("epoch", "val") and rec.get("epoch", 0) > epoch
            )
            if after or rec.get("event") == "final":
                dropped += 1
            else:
                kept.append(line)
        atomic_write_text(self.path, "".join(k + "\n" for k in kept))
        return dropped


def read_metrics(path: Path | str) -> list[dict[str, Any]]:
    """All events of a `metrics.jsonl` file."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def write_summary(path: Path | str, summary: dict[str, Any]) -> Path:
    return atomic_write_json(path, _jsonable(summary))


def _float(v: Any) -> float:
    """A logged number (NaN/Inf were written as the strings "nan"/"inf", which float() parses back)."""
    return float(v)


def run_title(run_dir: Path | str) -> str:
    """ "<run name>: <stop reason>" from the `summary.json` of a run folder (just the name without one)."""
    run_dir = Path(run_dir)
    name = run_dir.absolute().name
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return name
    reason, message = summary.get("stop_reason"), summary.get("stop_message")
    if not reason:
        return name
    return f"{name}: stopped by {reason}" + (f" ({message})" if message else "")


def plot_curves(
    events: list[dict[str, Any]],
    out_png: Path | str,
    *,
    best_epoch: int | None,
    title: str | None = None,
) -> Path | None:
    """Training and validation mel loss per epoch, the best epoch marked, lr on a second (log) axis.

    `title` defaults to `run_title` of the folder holding `out_png` (the run folder, whose summary.json
    is written first). Returns the written path, or None when there is nothing to plot yet.
    """
    fig = curves_figure(
        events, best_epoch=best_epoch, title=run_title(Path(out_png).parent) if title is None else title
    )
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out


def curves_figure(events: list[dict[str, Any]], *, best_epoch: int | None, title: str) -> Figure | None:
    """The figure of `plot_curves` (None when there is nothing to plot). The legend sits below the axes,
    so it never covers the curves or the "best: epoch N" label at the top of the plot."""
    epochs = [e for e in events if e["event"] == "epoch"]
    vals = [e for e in events if e["event"] == "val"]
    if not epochs and not vals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the GPT stage logs val/loss (CE per target token) instead of the SoVITS mel L1
    gpt = bool(vals) and "val/loss" in vals[0] and "val/mel" not in vals[0]
    val_key, train_key, lr_key = (
        ("val/loss", "train/per_token", "lr/gpt") if gpt else ("val/mel", "train/mel", "lr/g")
    )
    what = "CE per target token" if gpt else "mel L1"
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    if epochs:
        ax.plot(
            [e["epoch"] for e in epochs],
            [_float(e.get(train_key, math.nan)) for e in epochs],
            "-",
            color="tab:blue",
            label=f"train {what}" + ("" if gpt else " (random segments)"),
        )
    if vals:
        ax.plot(
            [e["epoch"] for e in vals],
            [_float(e.get(val_key, math.nan)) for e in vals],
            "o-",
            color="tab:orange",
            label=f"val {what}" + (" (teacher forced)" if gpt else " (inference path)"),
        )
        if "val/recon" in vals[0]:
            ax.plot(
                [e["epoch"] for e in vals],
                [_float(e["val/recon"]) for e in vals],
                "s--",
                color="tab:green",
                alpha=0.7,
                label="val reconstruction mel L1",
            )
    if best_epoch is not None:
        best = [e for e in vals if e["epoch"] == best_epoch]
        ax.axvline(best_epoch, color="tab:red", linestyle=":", linewidth=1.2)
        if best:
            ax.plot([best_epoch], [_float(best[-1][val_key])], "*", color="tab:red", markersize=14)
        xs = [e["epoch"] for e in epochs + vals]
        right_half = best_epoch > (min(xs) + max(xs)) / 2
        ax.annotate(  # on the side of the line that stays inside the axes
            f"best: epoch {best_epoch}",
            xy=(best_epoch, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(-4 if right_half else 4, -14),
            textcoords="offset points",
            ha="right" if right_half else "left",
            color="tab:red",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel(what)
    ax.grid(alpha=0.3)
    if vals and "val/spk_sim" in vals[0]:  # speaker similarity (higher is better) on its own axis
        ax3 = ax.twinx()
        ax3.spines["right"].set_position(("axes", 1.1))
        ax3.plot(
            [e["epoch"] for e in vals],
            [_float(e.get("val/spk_sim", math.nan)) for e in vals],
            "d-.",
            color="tab:purple",
            label="val speaker similarity",
        )
        ax3.set_ylabel("speaker similarity (cosine)", color="tab:purple")
        ax3.legend(loc="lower left", fontsize=8)
    if epochs and lr_key in epochs[0]:
        ax2 = ax.twinx()
        ax2.plot(
            [e["epoch"] for e in epochs],
            [_float(e[lr_key]) for e in epochs],
            "-",
            color="gray",
            alpha=0.6,
            label="lr (GPT)" if gpt else "lr (G)",
        )
        ax2.set_ylabel("learning rate")
        ax2.set_yscale("log")
        handles, labels = ax.get_legend_handles_labels()
        handles2, labels2 = ax2.get_legend_handles_labels()
        handles, labels = handles + handles2, labels + labels2
    else:
        handles, labels = ax.get_legend_handles_labels()
    ax.set_title("\n".join(textwrap.wrap(title, 95)), fontsize=9)  # a long stop message wraps
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))  # room for the legend below the axes
    return fig
