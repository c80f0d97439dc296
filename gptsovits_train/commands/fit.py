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

from gptsovits_train.commands.options import QuietOpt, SetOpt, fail, load_cli_config
from gptsovits_train.errors import GsvError
from gptsovits_train.fileio import OutputWriteError, output_failure
from gptsovits_train.layout import RunLayout
from gptsovits_train.logging_setup import configure_logging
from gptsovits_train.train.run_folder import discard_run

LOG = logging.getLogger(__name__)


FIT_HELP = (
    "Train the SoVITS generator on `train.dataset`: validation every `train.val_every` epochs, early "
    "stopping, ReduceLROnPlateau, and the best weights reloaded at the end.\n\n"
    "Ctrl-C (or SIGTERM, also when sent to the whole process group) stops after the current step, saves "
    "last.pt (resume with --resume), reloads the best weights and writes the summary; the exit code is then "
    "128 + the signal number (130 for Ctrl-C, 143 for SIGTERM). A second Ctrl-C aborts at once "
    "(exit 130).\n\n"
    "If the reloaded best weights do not validate to the recorded best, the run fails (exit 1) after "
    "writing everything."
)


def fit_command(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config file (see configs/).")],
    overrides: SetOpt = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(
            "--run-dir",
            "-r",
            help="Run folder for checkpoints and logs.",
            show_default="runs/<config file name>",
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --run-dir from its last.pt.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Discard an earlier run in --run-dir (checkpoints, logs, exports) and start over."
        ),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """`FIT_HELP` (one string per paragraph, so that the help text wraps by paragraph)."""
    rank = int(os.environ.get("RANK", "0"))
    configure_logging(quiet=quiet)
    if rank != 0:  # under torchrun, rank 0 speaks for the run; the others report errors only
        logging.getLogger().setLevel(logging.ERROR)
    if resume and force:
        raise typer.BadParameter("--resume and --force exclude each other", param_hint="--force")
    cfg = load_cli_config(config, overrides)
    if cfg.train.dataset is None:
        raise typer.BadParameter(
            "train.dataset is not set: point it at a folder made by `gsv-train prepare` "
            "(in the config or with --set train.dataset=DIR)",
            param_hint="--config",
        )
    if not Path(cfg.train.dataset).is_dir():
        raise typer.BadParameter(
            f"train.dataset: dataset folder not found: {cfg.train.dataset} "
            "(make it with `gsv-train prepare`)",
            param_hint="--config",
        )
    if run_dir is None:
        run_dir = Path("runs") / config.stem
    layout = RunLayout(run_dir)
    if force:
        discard_run(layout)
    elif not resume and layout.last.exists():
        raise fail(
            f"{run_dir} already holds a run ({layout.last}); pass --resume to continue it, --force to "
            "discard it and start over, or choose another --run-dir"
        )

    from gptsovits_train.train.loop import fit

    try:
        result = fit(cfg, run_dir, resume=resume, progress=not quiet)
    except OutputWriteError as exc:
        if layout.last.is_file():
            then = f"continue with `gsv-train fit --config {config} --run-dir {run_dir} --resume`"
        else:
            then = "run the same command again with --force"
        raise fail(
            f"{exc}; the checkpoints already written are kept. Free some space (or make the folder "
            f"writable), then {then}"
        ) from None
    except GsvError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail(
            f"aborted by a second Ctrl-C; the last saved position is in {run_dir}/checkpoints/last.pt "
            "(continue with --resume)",
            128 + int(signal.SIGINT),
        ) from None
    except OSError as exc:  # a disk/permission failure outside the atomic writers (folders, logs)
        message = output_failure(exc, run_dir)
        if message is None:
            raise
        raise fail(f"{message}; fix it and run the command again") from None
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
