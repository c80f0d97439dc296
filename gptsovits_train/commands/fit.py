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

from gptsovits_train.commands.options import QuietOpt, SetOpt, fail, load_cli_config
from gptsovits_train.config import StageName
from gptsovits_train.errors import GsvError
from gptsovits_train.fileio import OutputWriteError, output_failure
from gptsovits_train.layout import RunLayout
from gptsovits_train.logging_setup import configure_logging
from gptsovits_train.train.run_folder import discard_run

LOG = logging.getLogger(__name__)


FIT_HELP = (
    "Train the stages the config names (stages: [sovits, gpt], default sovits) on train.dataset, each into "
    "its own subfolder of the run folder (RUN/sovits/, RUN/gpt/): validation every val_every epochs, early "
    "stopping, ReduceLROnPlateau, and the best weights reloaded at the end, where they must validate to the "
    "recorded best (otherwise the run fails with exit 1 after writing everything).\n\n"
    "Ctrl-C (or SIGTERM, also when sent to the whole process group) stops after the current step, saves "
    "last.pt (continue with --resume), reloads the best weights and writes the summary; the exit code is "
    "then 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM). A second Ctrl-C aborts at once."
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
    if stage is not None and stage not in ("sovits", "gpt"):
        raise typer.BadParameter(f"'{stage}' is not one of sovits, gpt", param_hint="--stage")
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
    from gptsovits_train.train.stages import fit_stages, stage_dir

    names = [stage] if stage is not None else list(cfg.stages)
    layouts = [RunLayout(stage_dir(run_dir, name)) for name in names]
    if force:
        for layout in layouts:
            discard_run(layout)
    elif not resume and (held := [layout.last for layout in layouts if layout.last.exists()]):
        raise fail(
            f"{run_dir} already holds a run ({', '.join(map(str, held))}); pass --resume to continue it, "
            "--force to discard it and start over, or choose another --run-dir"
        )

    try:
        runs = fit_stages(
            cfg,
            run_dir,
            only=cast(StageName | None, stage),
            resume=resume,
            progress=not quiet,
        )
    except OutputWriteError as exc:
        if any(layout.last.is_file() for layout in layouts):
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
            f"aborted by a second Ctrl-C; the last saved position is in "
            f"{run_dir}/<stage>/checkpoints/last.pt (continue with --resume)",
            128 + int(signal.SIGINT),
        ) from None
    except OSError as exc:  # a disk/permission failure outside the atomic writers (folders, logs)
        message = output_failure(exc, run_dir)
        if message is None:
            raise
        raise fail(f"{message}; fix it and run the command again") from None
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
