"""`gsv-train download-pretrained`: chinese-hubert-base, SoVITS s2G/s2D (and the v2Pro sv model), and (unless
--no-gpt) the s1 GPT file and chinese-roberta-wwm-ext-large, from lj1995/GPT-SoVITS."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gptsovits_train.commands.options import QuietOpt, fail
from gptsovits_train.errors import GsvError
from gptsovits_train.logging_setup import configure_logging


def download_pretrained_command(
    dest: Annotated[
        Path | None,
        typer.Option(
            "--dest",
            help="Target folder.",
            show_default="$GSV_TRAIN_PRETRAINED or ~/.cache/gsv-train/pretrained",
        ),
    ] = None,
    version: Annotated[str, typer.Option("--version", help="v1, v2, v2Pro or v2ProPlus.")] = "v2",
    revision: Annotated[
        str | None, typer.Option("--revision", help="Repo branch, tag or commit.", show_default="main")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Hugging Face cache folder.", show_default="Hugging Face's own"),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Use only the Hugging Face cache and --dest; no network.")
    ] = False,
    no_hubert: Annotated[bool, typer.Option("--no-hubert", help="Skip chinese-hubert-base.")] = False,
    gpt: Annotated[
        bool,
        typer.Option(
            "--gpt/--no-gpt",
            help="Also fetch the GPT stage: the pretrained s1 file and chinese-roberta-wwm-ext-large.",
        ),
    ] = True,
    quiet: QuietOpt = False,
) -> None:
    """Fetch the pretrained files (sha256 recorded in <dest>/gsv-pretrained.json)."""
    configure_logging(quiet=quiet)
    from gptsovits_train.pretrained import VERSIONS, download_pretrained

    if version not in VERSIONS:
        raise typer.BadParameter(f"'{version}' is not one of {', '.join(VERSIONS)}", param_hint="--version")
    try:
        result = download_pretrained(
            dest,
            version,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=offline,
            hubert=not no_hubert,
            gpt=gpt,
        )
    except GsvError as exc:
        raise fail(str(exc)) from None
    for f in result.files:
        state = "kept" if f.reused else "fetched"
        typer.echo(f"{state:8s} {f.path}  sha256 {f.sha256}  {f.size:,} bytes")
    typer.echo(f"record   {result.record_path}")
    if result.hubert_dir is not None:
        typer.echo(f"use: gsv-train prepare ... --hubert {result.hubert_dir}")
    if result.sv_file is not None:
        typer.echo(f"     --sv {result.sv_file}")
    if result.s2g is not None and result.s2d is not None:
        typer.echo(f"     --set train.pretrained_s2G={result.s2g} --set train.pretrained_s2D={result.s2d}")
    if result.bert_dir is not None:
        typer.echo(f"     --set prepare.bert.model={result.bert_dir}")
    if result.s1 is not None:
        typer.echo(f"pretrained GPT (s1): {result.s1}")
