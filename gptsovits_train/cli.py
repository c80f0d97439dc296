"""`gsv-train` command line: thin Typer commands that parse options and call one library function each.

Heavy imports (torch, transformers) happen inside the commands, so `gsv-train --help` is fast.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from gptsovits_train import __version__
from gptsovits_train.config import Config, ConfigError, load_config
from gptsovits_train.errors import GsvError

LOG = logging.getLogger(__name__)

app = typer.Typer(
    name="gsv-train",
    help="Headless GPT-SoVITS (SoVITS v2) fine-tuning: prepare -> fit -> export-best.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config file (see configs/).", show_default="the built-in defaults"
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key, e.g. --set train.batch_size=4 (repeatable)."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")]


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


def load_cli_config(config: Path | None, overrides: list[str] | None, param: str = "--config") -> Config:
    """Load the config for a command; any problem becomes a usage error (exit 2) naming the key."""
    try:
        return load_config(config, overrides or [])
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint=param) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error and return the Exit to raise."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except GsvError as exc:
        raise SystemExit(fail(str(exc)).exit_code) from None


# Commands register themselves on `app` when their modules are imported (one module per command).
import gptsovits_train.commands  # noqa: E402,F401
