"""`gsv-train prepare INPUT... --out DIR`: audio + transcripts -> dataset folder (see `data.prepare`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from gptsovits_train.commands.options import ConfigOpt, QuietOpt, SetOpt, fail, load_cli_config
from gptsovits_train.errors import GsvError
from gptsovits_train.logging_setup import configure_logging

LOG = logging.getLogger(__name__)

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"
LANGUAGES = ("zh", "en", "ja", "ko", "yue")


def prepare_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write (resumed if it exists).")],
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Audio files and folders (recursive; wav, flac, mp3, ogg, opus). May be left out when "
            "--transcripts lists the audio, or with --sample.",
            exists=True,
            show_default=False,
        ),
    ] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    transcripts: Annotated[
        list[Path] | None,
        typer.Option(
            "--transcripts",
            "-t",
            help="Transcript file: GPT-SoVITS .list (path|speaker|LANG|text) or LJSpeech metadata.csv "
            "(id|text[|normalized]). Repeatable. Sidecar <name>.txt/.lab files are used automatically.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    language: Annotated[
        str | None,
        typer.Option("--language", "-l", help="Language of transcripts without one: zh, en, ja, ko, yue."),
    ] = None,
    speaker: Annotated[
        str | None, typer.Option("--speaker", help="Speaker name (default: each file's folder name).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-j", help="Parallel processes (default: all cores).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Split seed (default prepare.split.seed).")
    ] = None,
    val_ratio: Annotated[
        float | None, typer.Option("--val-ratio", help="Validation fraction in [0, 1) (default 0.1).")
    ] = None,
    val_list: Annotated[
        Path | None,
        typer.Option(
            "--val-list",
            help="File of clip ids or paths that form the validation set.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    slice_only: Annotated[
        bool,
        typer.Option(
            "--slice-only", help="Only slice: write clips and transcripts_template.list, then stop."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Discard an earlier run in --out and start over.")
    ] = False,
    sample: Annotated[
        bool, typer.Option("--sample", help="Use the embedded LJSpeech sample (12 clips, English).")
    ] = False,
    hubert: Annotated[
        str | None,
        typer.Option(
            "--hubert",
            help="HF-format chinese-hubert-base folder for content features, or 'random-tiny' (a small "
            "random HuBERT: checks the pipeline, makes no usable voice). Default: prepare.features.hubert, "
            "else the files of `gsv-train download-pretrained` when present.",
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="Device for HuBERT/ASR: auto, cpu or cuda.")
    ] = None,
    asr: Annotated[
        Path | None,
        typer.Option(
            "--asr",
            help="Local Whisper model folder: sources without a transcript are sliced and transcribed.",
            file_okay=False,
        ),
    ] = None,
    from_official: Annotated[
        Path | None,
        typer.Option(
            "--from-official",
            help="Import an official GPT-SoVITS experiment folder (logs/<exp> with 2-name2text.txt, "
            "4-cnhubert/, 5-wav32k/) instead of preparing audio.",
            file_okay=False,
        ),
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Slice, normalise and resample audio to 32 kHz clips, cache spectrograms, split 9:1, write a report."""
    configure_logging(quiet=quiet)
    if workers is not None and workers < 1:
        raise typer.BadParameter(f"must be at least 1, got {workers}", param_hint="--workers")
    if val_ratio is not None and not 0.0 <= val_ratio < 1.0:
        raise typer.BadParameter(f"must be in [0, 1), got {val_ratio}", param_hint="--val-ratio")
    if language is not None and language not in LANGUAGES:
        raise typer.BadParameter(
            f"{language!r} is not one of {', '.join(LANGUAGES)}", param_hint="--language"
        )
    if device is not None and device not in ("auto", "cpu", "cuda"):
        raise typer.BadParameter(f"{device!r} is not one of auto, cpu, cuda", param_hint="--device")
    if asr is not None and not asr.is_dir():
        raise typer.BadParameter(f"no such folder: {asr}", param_hint="--asr")
    if from_official is not None and not from_official.is_dir():
        raise typer.BadParameter(f"no such folder: {from_official}", param_hint="--from-official")
    sources = list(inputs or [])
    transcript_files = list(transcripts or [])
    if from_official is not None:
        if sources or sample or slice_only or asr is not None:
            raise typer.BadParameter(
                "--from-official cannot be combined with INPUT, --sample, --slice-only or --asr",
                param_hint="--from-official",
            )
        if len(transcript_files) > 1:
            raise typer.BadParameter(
                "with --from-official, give at most one --transcripts .list", param_hint="--transcripts"
            )
    elif sample:
        if sources or transcript_files:
            raise typer.BadParameter(
                "--sample cannot be combined with INPUT or --transcripts", param_hint="--sample"
            )
        transcript_files = [SAMPLE_DIR / "metadata.csv"]
        language = language or "en"
        speaker = speaker or "ljspeech"
    elif not sources and not transcript_files:
        raise typer.BadParameter(
            "give audio files/folders, --transcripts FILE, or --sample", param_hint="INPUT"
        )
    cfg = load_cli_config(config, overrides)
    from gptsovits_train.data.prepare_request import PrepareRequest, run_prepare

    request = PrepareRequest(
        out=out,
        sources=sources,
        transcripts=transcript_files,
        language=language,
        speaker=speaker,
        workers=workers,
        seed=seed,
        val_ratio=val_ratio,
        val_list=val_list,
        slice_only=slice_only,
        force=force,
        hubert=hubert,
        device=device,
        asr=asr,
        from_official=from_official,
        progress=not quiet,
    )

    from gptsovits_train.data.report import format_summary

    try:
        report = run_prepare(request, cfg)
    except GsvError as exc:
        raise fail(str(exc)) from None
    if not quiet:
        typer.echo(format_summary(report))
    if slice_only:
        typer.echo(
            f"sliced {report.n_clips} clips into {out}/wavs; fill in {out}/transcripts_template.list and run "
            f"`gsv-train prepare --transcripts {out}/transcripts_template.list --out DATASET`"
            f" ({len(report.skipped)} skipped, {report.n_warnings} warnings)"
        )
    else:
        if not cfg.prepare.features.hubert:
            typer.secho(
                "note: no HuBERT model given, so no content features were computed and `fit` will refuse "
                "this dataset; run `gsv-train download-pretrained` or pass --hubert DIR (or 'random-tiny' "
                "for a pipeline check), then run prepare again (finished work is kept).",
                err=True,
                fg=typer.colors.YELLOW,
            )
        m = report.minutes()
        typer.echo(
            f"prepared {report.n_clips} clips ({m['train']:.1f} min train, {m['val']:.1f} min val) in {out}; "
            f"{len(report.skipped)} skipped, {report.n_warnings} warnings (details in {out}/report.json)"
        )
