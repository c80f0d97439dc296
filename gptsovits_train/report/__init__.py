"""The listening report of a run: `report.html` and its audio under `listen/` (see `page.py`, `listen.py`)."""

from gptsovits_train.report.listen import ListenClip, ListenReport
from gptsovits_train.report.page import build_report

__all__ = ["ListenClip", "ListenReport", "build_report"]
