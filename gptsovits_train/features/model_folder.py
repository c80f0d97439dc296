"""Local Hugging Face model folders: reading their config.json, and building one atomically.

Shared by the HuBERT and BERT loaders (`features.hubert`, `features.bert`) and their `random-tiny` builders.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gptsovits_train.errors import GsvError

LOG = logging.getLogger(__name__)

#: Weight files transformers reads from a model folder (one of them must exist).
WEIGHT_FILES: tuple[str, ...] = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def read_model_config(path: Path, what: str, error: type[GsvError], hint: str) -> dict[str, Any]:
    """The config.json of a model folder as a dict.

    Args:
        path: the folder.
        what: the model's name for the "not found" message ("BERT").
        error: the exception class to raise (its message names the problem, then `hint`).
        hint: what the option takes / how to get the model, appended to "not found"/"is a file"/"no config".
    Raises:
        error: missing folder, a file instead of a folder, no or invalid config.json, not a JSON object.
    """
    if not path.exists():
        raise error(f"{what} folder not found: {path} ({hint})")
    if not path.is_dir():
        raise error(f"{path} is a file; {hint}")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise error(f"{path} is not a Hugging Face model folder (no config.json); {hint}")
    try:
        data = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{cfg_file} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{cfg_file} does not hold a JSON object")
    return data


def write_folder_atomically(folder: Path, write: Callable[[Path], None]) -> Path:
    """Let `write` fill a temporary sibling folder, then rename it to `folder` (replacing an old one).

    A crash or an error leaves no half-written `folder` (the temporary one is removed).
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        write(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
