"""What every command shares: the common options, config loading as a usage error, the one-line failure."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gptsovits_train.config import Config, ConfigError, load_config

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (see configs/).")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key, e.g. --set train.batch_size=4 (repeatable)."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")]


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
