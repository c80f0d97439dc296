"""`gsv-train report RUN_DIR`: rebuild a run's `report.html` from its files (see `report.page`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from gptsovits_train.commands.options import QuietOpt, fail
from gptsovits_train.errors import GsvError
from gptsovits_train.logging_setup import configure_logging

LOG = logging.getLogger(__name__)


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="Run folder made by `gsv-train fit`.")],
    quiet: QuietOpt = False,
) -> None:
    """Rebuild RUN_DIR/report.html (curves, validation table, audio of every validated epoch) from
    metrics.jsonl, summary.json and listen/ — for runs that were stopped hard, or older runs."""
    configure_logging(quiet=quiet)
    if not run_dir.is_dir():
        raise typer.BadParameter(f"{run_dir} is not a folder", param_hint="RUN_DIR")
    from gptsovits_train.report.page import build_report

    try:
        path = build_report(run_dir)
    except GsvError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"cannot write the report in {run_dir}: {exc}") from None
    typer.echo(f"wrote {path}")
