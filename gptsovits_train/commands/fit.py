"""`gsv-train fit --config FILE`: fine-tune the stages the config names (SoVITS, GPT) on a prepared dataset,
each into its own subfolder of the run folder (see `train.stages.fit_stages`).

Multi-GPU: `torchrun --nproc_per_node N -m gptsovits_train fit --config FILE` (DDP; rank 0 writes).
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Annotated, cast

import typer

from gptsovits_train.commands.options import ConfigOpt, QuietOpt, SetOpt, fail, load_cli_config
from gptsovits_train.config import StageName
from gptsovits_train.errors import GsvError
from gptsovits_train.logging_setup import configure_logging

LOG = logging.getLogger(__name__)


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
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in --run-dir: finished stages are skipped, an unfinished one continues "
            "from its last.pt.",
        ),
    ] = False,
    stage: Annotated[
        str | None,
        typer.Option("--stage", help="Train only this stage (sovits or gpt) instead of the config's stages."),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Train the stages the config names (`stages: [sovits, gpt]`, default sovits) on `train.dataset`, each
    into its own subfolder of the run folder (`<run>/sovits/`, `<run>/gpt/`): validation every
    `train.val_every` epochs, early stopping, ReduceLROnPlateau, and the best weights reloaded at the end.

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
    if stage is not None and stage not in ("sovits", "gpt"):
        raise typer.BadParameter(f"'{stage}' is not one of sovits, gpt", param_hint="--stage")
    cfg = load_cli_config(config, overrides)
    if run_dir is None:
        run_dir = Path("runs") / (config.stem if config is not None else "default")

    from gptsovits_train.train.stages import fit_stages

    try:
        runs = fit_stages(
            cfg,
            run_dir,
            only=cast(StageName | None, stage),
            resume=resume,
            progress=not quiet,
        )
    except GsvError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail(
            f"aborted by a second Ctrl-C; the last saved position is in "
            f"{run_dir}/<stage>/checkpoints/last.pt (continue with --resume)",
            128 + int(signal.SIGINT),
        ) from None
    if rank != 0:
        return
    for one in runs:
        result = one.result
        if result is None:
            typer.echo(f"[{one.name}] already finished in {one.run_dir} (skipped)")
            continue
        s = result.summary
        if result.best_epoch is not None:
            typer.echo(
                f"[{one.name}] best epoch {result.best_epoch}: {s['monitor']} {result.best_value:.6f} "
                f"(after reloading best.pt: {result.val_after_reload:.6f})"
            )
        else:
            typer.echo(f"[{one.name}] no validation finished: no best weights yet")
        typer.echo(
            f"[{one.name}] stopped: {result.stop_reason} ({result.stop_message}) after {result.steps} steps"
        )
        typer.echo(
            f"[{one.name}] run folder: {result.run_dir}  (summary.json, curves.png, checkpoints/best.pt)"
        )
        if result.stop_reason == "interrupted":
            typer.echo(f"continue with: gsv-train fit --config ... --run-dir {run_dir} --resume")
            signum = signal.Signals[result.signal or "SIGINT"]
            raise typer.Exit(128 + int(signum))
    if any(one.summary and one.summary.get("best_epoch") is not None for one in runs):
        typer.echo(f"export with: gsv-train export-best {run_dir}")
