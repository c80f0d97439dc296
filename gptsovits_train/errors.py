"""User-facing errors: the CLI prints their message as one line and exits non-zero (no traceback)."""


class GsvError(Exception):
    """An expected failure with a clear, specific message (bad input, missing file, nothing usable)."""


class CheckpointError(GsvError):
    """A weights/checkpoint file is corrupt, truncated, foreign, or does not match the model."""
