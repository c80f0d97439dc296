"""`gsv-train fit --config FILE`: fine-tune SoVITS on a prepared dataset (see `train.loop.fit`).

Multi-GPU: `torchrun --nproc_per_node N -m gptsovits_train fit --config FILE` (DDP; rank 0 writes).
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Annotated

import typer

from gptsovits_train.cli import ConfigOpt, QuietOpt, SetOpt, app, fail, load_cli_config
from gptsovits_train.errors import GsvError
from gptsovits_train.logging_setup import configure_logging

LOG = logging.getLogger(__name__)


@app.command("fit")
def fit_command(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(
            "--run-dir", "-r", help="Run folder for checkpoints and logs (default: runs/<config file name>)."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --run-dir from its last.pt.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Train the SoVITS generator on `train.dataset`: validation every `train.val_every` epochs, early
    stopping, ReduceLROnPlateau, and the best weights reloaded at the end.

    Ctrl-C (or SIGTERM, also when sent to the whole process group) stops after the current step, saves
    last.pt (resume with --resume), reloads the best weights and writes the summary; the exit code is then
    128 + the signal number (130 for Ctrl-C, 143 for SIGTERM). A second Ctrl-C aborts at once (exit 130).
    If the reloaded best weights do not validate to the recorded best, the run fails (exit 1) after
    writing everything.
    """
    rank = int(os.environ.get("RANK", "0"))
    configure_logging(quiet=quiet)
    if rank != 0:  # under torchrun, rank 0 speaks for the run; the others report errors only
        logging.getLogger().setLevel(logging.ERROR)
    cfg = load_cli_config(config, overrides)
    if run_dir is None:
        run_dir = Path("runs") / (config.stem if config is not None else "default")

    from gptsovits_train.train.loop import fit

    try:
        result = fit(cfg, run_dir, resume=resume, progress=not quiet)
    except GsvError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail(
            f"aborted by a second Ctrl-C; the last saved position is in {run_dir}/checkpoints/last.pt "
            "(continue with --resume)",
            128 + int(signal.SIGINT),
        ) from None
    if rank != 0:
        return
    s = result.summary
    if result.best_epoch is not None:
        typer.echo(
            f"best epoch {result.best_epoch}: {s['monitor']} {result.best_value:.6f} "
            f"(after reloading best.pt: {result.val_after_reload:.6f})"
        )
    else:
        typer.echo("no validation finished: no best weights yet")
    typer.echo(f"stopped: {result.stop_reason} ({result.stop_message}) after {result.steps} steps")
    typer.echo(f"run folder: {result.run_dir}  (summary.json, curves.png, checkpoints/best.pt)")
    if result.stop_reason == "interrupted":
        typer.echo(f"continue with: gsv-train fit --config ... --run-dir {result.run_dir} --resume")
        signum = signal.Signals[result.signal or "SIGINT"]
        raise typer.Exit(128 + int(signum))
    if result.best_epoch is not None:
        typer.echo(f"export with: gsv-train export-best {result.run_dir}")
