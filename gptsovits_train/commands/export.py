"""`gsv-train export-best` and `gsv-train inspect`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, cast

import typer

from gptsovits_train.commands.options import QuietOpt, fail
from gptsovits_train.errors import GsvError
from gptsovits_train.logging_setup import configure_logging


def export_best_command(
    source: Annotated[
        Path,
        typer.Argument(
            help="Run folder (exports the best weights of every trained stage, never last.pt), a run "
            "checkpoint, an official G_*.pth or a pretrained s2G file."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output file, or a folder for the default name.",
            show_default="<run>/exports/",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Export name: <name>_e<epoch>_s<step>.pth (SoVITS), <name>-e<epoch>.ckpt (GPT).",
            show_default="the run folder's name",
        ),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option("--format", help="pth (official GPT-SoVITS format) or safetensors."),
    ] = "pth",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Write the best weights in the official GPT-SoVITS formats (+ a manifest JSON each).

    SoVITS: `<name>_e<epoch>_s<step>.pth` (official SoVITS_weights_v2/); GPT: `<name>-e<epoch>.ckpt`
    (official GPT_weights_v2/).
    """
    configure_logging(quiet=quiet)
    if fmt not in ("pth", "safetensors"):
        raise typer.BadParameter(f"'{fmt}' is not one of pth, safetensors", param_hint="--format")
    from gptsovits_train.checkpoints.export import ExportFormat, export_best
    from gptsovits_train.train.gpt_stage import DATASET_REPORT as GPT_DATASET_REPORT
    from gptsovits_train.train.gpt_stage import export_gpt_checkpoint
    from gptsovits_train.train.stages import export_stages, trained_stages

    try:
        if source.is_dir() and not (source / "checkpoints").is_dir() and trained_stages(source):
            for stage, res in export_stages(source, out=out, name=name, fmt=fmt, force=force):
                if stage == "gpt":
                    _echo_gpt(res)
                else:
                    _echo_sovits(res)
            return
        gpt_dir = source if source.is_dir() else source.parent.parent
        if (gpt_dir / GPT_DATASET_REPORT).is_file():  # a GPT stage folder or one of its checkpoints
            ckpt = source / "checkpoints" / "best.pt" if source.is_dir() else source
            _echo_gpt(export_gpt_checkpoint(ckpt, out, name=name, force=force))
            return
        result = export_best(source, out=out, name=name, fmt=cast(ExportFormat, fmt), force=force)
    except GsvError as exc:
        raise fail(str(exc)) from None
    _echo_sovits(result)


def _echo_gpt(result: Any) -> None:
    typer.echo(f"wrote {result.path}")
    m = result.manifest
    typer.echo(f"  GPT {m['version']}, {m['info']}, {result.n_keys} keys, {result.size_bytes:,} bytes")
    best = m.get("best") or {}
    if "value" in best:
        typer.echo(f"  best validation loss {best['value']:.6g}")
    typer.echo(f"  manifest {result.manifest_path}")


def _echo_sovits(result: Any) -> None:
    from gptsovits_train.checkpoints.version import size_rule_note

    typer.echo(f"wrote {result.path}")
    typer.echo(
        f"  version {result.version}, {result.info}, {result.n_keys} keys, {result.size_bytes:,} bytes"
    )
    if result.official_detection is not None:
        det = result.official_detection
        typer.echo(f"  official detection: {det.model_version} ({det.rule})")
        note = size_rule_note(det, result.version)
        if note is not None:
            typer.echo(f"  note: {note}")
    if result.best_value is not None:
        typer.echo(f"  best validation loss {result.best_value:.6g}")
    typer.echo(f"  manifest {result.manifest_path}")


def inspect_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="A SoVITS weight file (export, pretrained, G_*.pth, run checkpoint) or a GPT (s1) file "
            "(GPT_weights export, pretrained s1 .ckpt)."
        ),
    ],
    no_load: Annotated[
        bool,
        typer.Option("--no-load", help="Compare keys/shapes only; do not load the weights into a model."),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Print the version (official rules), keys, dtypes, info, parameter count and strict loadability.

    Exits with 1 when the file does not load strictly into our model (exports may lack enc_q).
    """
    configure_logging(quiet=quiet)
    from gptsovits_train.checkpoints.gpt_files import inspect_gpt_lines, is_gpt_file
    from gptsovits_train.checkpoints.inspect import inspect_weights

    if file.is_file() and is_gpt_file(file):
        try:
            lines, ok = inspect_gpt_lines(file, load=not no_load)
        except GsvError as exc:
            raise fail(str(exc)) from None
        for line in lines:
            typer.echo(line)
        if not ok:
            raise typer.Exit(1)
        return
    try:
        report = inspect_weights(file, load=not no_load)
    except GsvError as exc:
        raise fail(str(exc)) from None
    for line in report.lines():
        typer.echo(line)
    if not report.loads:
        raise typer.Exit(1)
