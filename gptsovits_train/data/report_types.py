"""Small records shared by every prepare stage: a skipped item and a warning, both with a reason."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Skipped:
    """Something left out of the dataset (a source, a clip, a transcript line) and why.

    `source` names it: a file path, `path [12.30-12.90 s]` for a clip, or `file:line` for a line.
    `stage` is the prepare stage that dropped it (`transcripts`, `audio`, or a later stage's name).
    """

    source: str
    reason: str
    stage: str = "audio"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Skipped:
        return cls(str(data["source"]), str(data["reason"]), str(data.get("stage", "audio")))


@dataclass(frozen=True)
class WarningItem:
    """Something accepted or repaired that the user should know about (peak repair, 8-bit audio, ...)."""

    source: str
    message: str
    stage: str = "audio"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WarningItem:
        return cls(str(data["source"]), str(data["message"]), str(data.get("stage", "audio")))
