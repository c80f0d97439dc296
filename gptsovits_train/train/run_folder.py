"""Starting a run over: what `gsv-train fit --force` removes from a run folder.

Only the paths a run writes (`layout.RunLayout`) are removed; anything else a user put in the folder
stays, and so does the folder itself.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from gptsovits_train.layout import RunLayout

LOG = logging.getLogger(__name__)


def discard_run(layout: RunLayout) -> list[Path]:
    """Delete the files and folders of an earlier run in `layout.root`; returns what was removed."""
    removed: list[Path] = []
    for folder in (layout.ckpt_dir, layout.tb_dir, layout.exports_dir):
        if folder.is_dir():
            shutil.rmtree(folder)
            removed.append(folder)
    for path in (layout.config, layout.metrics, layout.summary, layout.curves):
        if path.is_file():
            path.unlink()
            removed.append(path)
    if removed:
        LOG.info("--force: removed the earlier run in %s (%d entries)", layout.root, len(removed))
    return removed
