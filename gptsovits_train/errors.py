"""User-facing errors: the CLI prints their message as one line and exits non-zero (no traceback)."""


class GsvError(Exception):
    """An expected failure with a clear, specific message (bad input, missing file, nothing usable)."""


class CheckpointError(GsvError):
    """A weights/checkpoint file is corrupt, truncated, foreign, or does not match the model."""


class Interrupted(Exception):
    """A run stopped by SIGINT/SIGTERM after keeping its finished work; not a `GsvError` so that a
    command's error handler lets it through to `cli.main`, which prints it and exits `exit_code`."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
