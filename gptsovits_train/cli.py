"""`gsv-train` command line: thin Typer commands that parse options and call one library function each.

Heavy imports (torch, transformers) happen inside the commands, so `gsv-train --help` is fast.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from gptsovits_train import __version__
from gptsovits_train.commands.download import download_pretrained_command
from gptsovits_train.commands.export import export_best_command, inspect_command
from gptsovits_train.commands.fit import fit_command
from gptsovits_train.commands.options import fail
from gptsovits_train.commands.prepare import prepare_command
from gptsovits_train.errors import GsvError

LOG = logging.getLogger(__name__)

app = typer.Typer(
    name="gsv-train",
    help="Headless GPT-SoVITS (SoVITS v2) fine-tuning: prepare -> fit -> export-best.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"gsv-train {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Headless GPT-SoVITS (SoVITS v2) fine-tuning."""


# The commands, registered here explicitly (their modules do not know the app), in `--help` order.
app.command("download-pretrained")(download_pretrained_command)
app.command("export-best")(export_best_command)
app.command("inspect")(inspect_command)
app.command("fit")(fit_command)
app.command("prepare")(prepare_command)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except GsvError as exc:
        raise SystemExit(fail(str(exc)).exit_code) from None
