"""Safe loading of PyTorch weight files, including official GPT-SoVITS exports.

Every file goes through ``torch.load(..., weights_only=True)``: torch's restricted unpickler, which only
rebuilds tensors, storages, plain containers (dict, list, tuple, OrderedDict, ...) and numbers/strings.
Nothing is imported and no function outside that allowlist is called; anything else (``os.system``,
``builtins.eval``, ``subprocess.Popen``, any foreign class) is refused with a `CheckpointError`.

One name is added to the allowlist: ``utils.HParams``, the official config class that the official
exporter pickles into the ``config`` entry. It is mapped (via ``torch.serialization.safe_globals`` with a
``(class, "utils.HParams")`` pair, torch >= 2.6) to `OfficialHParams`, our own dict subclass whose state
can only be a dict with string keys -- the official ``utils`` module is never needed or imported.
Loading is a single pass: the extra name only matters when a file references it.

Headers: the official exporter overwrites the zip magic ``PK`` with a version tag (``05`` v2Pro,
``06`` v2ProPlus; ``00``-``04`` for other versions). Such files are read into memory and ``PK`` is put back
before loading. Legacy (pre-zip) torch files are accepted; safetensors files, empty, truncated, corrupt
or foreign files give one clear `CheckpointError`.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from gptsovits_train.checkpoints.version import HEADER_VERSIONS
from gptsovits_train.errors import CheckpointError

LOG = logging.getLogger(__name__)

OFFICIAL_HPARAMS_NAME = "utils.HParams"

Container = Literal["zip", "headered-zip", "legacy-pickle", "safetensors"]


class OfficialHParams(dict[str, Any]):
    """Our stand-in for the official ``utils.HParams`` config object: a dict with attribute access.

    Only used while unpickling official exports; `to_plain` turns it into plain nested dicts.
    Its pickled state must be a dict with string keys; it is stored as items (never as attributes).
    """

    def __setstate__(self, state: object) -> None:
        if isinstance(state, tuple) and len(state) == 2 and state[1] in (None, {}):
            state = state[0]
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise pickle.UnpicklingError(
                f"{OFFICIAL_HPARAMS_NAME} state must be a dict with string keys, got {type(state).__name__}"
            )
        self.update(state)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def to_plain(obj: Any) -> Any:
    """Recursively turn `OfficialHParams`/dicts/lists/tuples into plain dicts and lists."""
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    return obj


@dataclass(frozen=True)
class FileKind:
    """What the first bytes of a file say.

    `container`: "zip" (plain ``torch.save``), "headered-zip" (zip whose ``PK`` was replaced by an
    official version header), "legacy-pickle" (pre-1.6 torch format) or "safetensors".
    `header`: the first two bytes; `size`: bytes on disk.
    """

    container: Container
    header: bytes
    size: int

    @property
    def header_text(self) -> str:
        return (
            self.header.decode("latin-1") if self.header in (b"PK", *HEADER_VERSIONS) else self.header.hex()
        )


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def sniff_file(path: Path | str) -> FileKind:
    """Classify a file by its first bytes; raises `CheckpointError` for missing, empty or unknown files."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    with open(path, "rb") as fh:
        head = fh.read(16)
    return _classify(head, size, str(path))


def _classify(head: bytes, size: int, name: str) -> FileKind:
    magic = head[:2]
    if head[:4] == b"PK\x03\x04":
        return FileKind("zip", magic, size)
    if magic in HEADER_VERSIONS and head[2:4] == b"\x03\x04":
        return FileKind("headered-zip", magic, size)
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return FileKind("legacy-pickle", magic, size)
    if _looks_like_safetensors(head, size):
        return FileKind("safetensors", magic, size)
    if magic in HEADER_VERSIONS:
        raise CheckpointError(
            f"{name}: starts with the version header {magic.decode()} but no zip follows (corrupt file)"
        )
    preview = head[:8]
    if preview.isascii() and all(32 <= b < 127 or b in (9, 10, 13) for b in preview):
        what = f"text {preview.decode('ascii')!r}"
    else:
        what = f"bytes {preview.hex()}"
    raise CheckpointError(f"{name}: not a PyTorch checkpoint (starts with {what})")


_GLOBAL_NAME = re.compile(r"GLOBAL (?P<name>[\w.]+)")
_REFUSAL_MARKERS = (
    "Unsupported global",
    "unsupported GLOBAL",
    "unrecognized function",
    "Can only",
    "is blocked",
)


def _unpickling_reason(text: str) -> str:
    """The specific part of torch's weights_only error text (without its generic preamble/epilogue)."""
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    specific = [
        p
        for p in paragraphs
        if not p.startswith(("Weights only load failed", "Check the documentation", "Please file an issue"))
    ]
    reason = (specific or paragraphs or [""])[0]
    return reason.removeprefix("WeightsUnpickler error:").strip()


#: Sentences of torch's errors that are advice about torch's own loader (e.g. to turn off
#: `weights_only`): never passed on to the user.
_TORCH_ADVICE = ("weights_only", "safe_globals", "add_safe_globals", "allowlist", "trusted source")


def _our_words(text: str) -> str:
    """`text` without the sentences that give torch's loader advice (see `_TORCH_ADVICE`)."""
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    return " ".join(s for s in sentences if not any(a in s for a in _TORCH_ADVICE)).strip()


def unpickling_error(path: str, exc: pickle.UnpicklingError) -> CheckpointError:
    """The one-line `CheckpointError` for a file the restricted unpickler refused or could not read."""
    return _refusal_or_corruption(path, exc)


def _refusal_or_corruption(path: str, exc: pickle.UnpicklingError) -> CheckpointError:
    reason = _unpickling_reason(str(exc))
    if any(marker in reason for marker in _REFUSAL_MARKERS):
        g = _GLOBAL_NAME.search(reason)
        what = f"'{g.group('name')}'" if g else f"something else ({reason.splitlines()[0]})"
        return CheckpointError(
            f"{path}: refused to load: it references {what}, which is not allowed (only tensors, plain "
            f"containers and the official {OFFICIAL_HPARAMS_NAME} config are accepted); the file is not a "
            "plain weight file and may try to run code"
        )
    first = _our_words(reason.splitlines()[0]) if reason else ""
    detail = first or type(exc).__name__
    return CheckpointError(
        f"{path}: corrupt or unreadable, not a checkpoint this tool can safely read ({detail})"
    )


def _first_line(exc: BaseException) -> str:
    """First sentence of an exception message (torch appends long generic advice)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = _our_words(text.splitlines()[0]) or type(exc).__name__
    cut = line.find(". ", 20)
    return line[: cut + 1] if cut > 0 else line


def load_bytes(data: bytes, name: str = "<bytes>") -> Any:
    """Safely load a torch file held in memory (any supported header); see `load_torch_file`."""
    if not data:
        raise CheckpointError(f"{name}: empty data, not a checkpoint")
    kind = _classify(data[:16], len(data), name)
    return _load(kind, name, data=data)


def load_torch_file(path: Path | str) -> Any:
    """Safely load a torch checkpoint from disk: ``weights_only=True`` plus the ``utils.HParams`` alias.

    Accepts plain zips, official headered zips (``00``-``06``, ``PK`` restored in memory) and legacy
    torch pickles. Returns the loaded object with tensors on the CPU; official configs come back as
    `OfficialHParams` (use `to_plain`). Raises `CheckpointError` for anything else.
    """
    path = Path(path)
    kind = sniff_file(path)
    return _load(kind, str(path), path=path)


def _load(kind: FileKind, name: str, *, path: Path | None = None, data: bytes | None = None) -> Any:
    if kind.container == "safetensors":
        raise CheckpointError(
            f"{name}: is a safetensors file, not a PyTorch checkpoint (read it with the safetensors reader)"
        )
    source: Any
    if kind.container == "headered-zip":
        if data is not None:
            raw = data
        elif path is not None:
            raw = path.read_bytes()
        else:  # pragma: no cover - internal misuse
            raise ValueError("need path or data")
        source = io.BytesIO(b"PK" + raw[2:])
        LOG.debug("%s: restored 'PK' over header %s", name, kind.header_text)
    elif data is not None:
        source = io.BytesIO(data)
    else:
        source = path
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    # the (class, "module.Name") allowlist form exists from torch 2.6 on
    if safe_globals is None or torch.torch_version.TorchVersion(torch.__version__) < "2.6":
        raise CheckpointError(f"{name}: reading checkpoints needs torch >= 2.6 (found {torch.__version__})")
    try:
        with safe_globals([(OfficialHParams, OFFICIAL_HPARAMS_NAME)]):
            return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refusal_or_corruption(name, exc) from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, struct.error) as exc:
        raise CheckpointError(
            f"{name}: corrupt or truncated, not a checkpoint this tool can safely read ({_first_line(exc)})"
        ) from None


def check_official_export(data: bytes, weight_keys: list[str], what: str = "export") -> None:
    """Prove export bytes load with plain ``torch.load(weights_only=True)`` (``PK`` put back over a version
    header) and hold ``{"weight", "config", "info"}`` with exactly `weight_keys`, all fp16.

    Raises `RuntimeError` (a bug in the writer, never bad user input).
    """
    raw = b"PK" + data[2:] if data[:2] != b"PK" else data
    try:
        loaded = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise RuntimeError(f"{what} self-check failed: not loadable with weights_only=True ({exc})") from exc
    if set(loaded) != {"weight", "config", "info"} or list(loaded["weight"]) != list(weight_keys):
        raise RuntimeError(f"{what} self-check failed: written keys differ from the intended ones")
    if any(t.dtype != torch.float16 for t in loaded["weight"].values()):
        raise RuntimeError(f"{what} self-check failed: not every tensor is fp16")
