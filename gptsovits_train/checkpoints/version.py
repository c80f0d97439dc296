"""SoVITS version detection by the official rules (`process_ckpt.get_sovits_version_from_path_fast`).

The official web UI decides which model to build from the file alone, in this order:

1. the md5 of the first 8192 bytes, looked up in a table of official pretrained files;
2. the first two bytes when they are not ``PK``: ``00`` v1, ``01`` v2, ``02`` v3, ``03`` v3 LoRA,
   ``04`` v4 LoRA, ``05`` v2Pro, ``06`` v2ProPlus (the exporter overwrote the zip magic with them);
3. for a plain zip (``PK``), the file size: below 82,978 KiB v1, below 700 MiB v2, otherwise v3.

The result is a triple like the official one: the symbol-table ("language") version, the model version
and whether the file is a LoRA. After loading, the official loaders refine it: a non-Pro file whose
``enc_p.text_embedding.weight`` has 322 rows is v1, otherwise v2 (`loader_version`).

The pretrained md5 table below was read from public copies of the official ``process_ckpt.py`` (the three
original entries from the official repository itself, the v4/v2Pro/v2ProPlus entries from later copies);
the hashes were not re-checked against the files, which this project cannot download.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptsovits_train.errors import CheckpointError

LOG = logging.getLogger(__name__)

#: Plain zip files below this size are v1 (82,978 KiB).
V1_SIZE_LIMIT = 82978 * 1024
#: Plain zip files below this size (and not v1) are v2; larger ones are v3 (700 MiB).
V2_SIZE_LIMIT = 700 * 1024 * 1024
#: Bytes hashed for the pretrained-file lookup.
HASH_PREFIX_BYTES = 8192
#: v1 symbol table size: the loaders call a file v1 when its text embedding has this many rows.
V1_TEXT_EMBEDDING_ROWS = 322
TEXT_EMBEDDING_KEY = "enc_p.text_embedding.weight"

#: First two bytes -> (symbol version, model version, is LoRA).
HEADER_VERSIONS: dict[bytes, tuple[str, str, bool]] = {
    b"00": ("v1", "v1", False),
    b"01": ("v2", "v2", False),
    b"02": ("v2", "v3", False),
    b"03": ("v2", "v3", True),
    b"04": ("v2", "v4", True),
    b"05": ("v2", "v2Pro", False),
    b"06": ("v2", "v2ProPlus", False),
}
#: Model version -> header written over ``PK`` by the official exporter (plain v1/v2 keep ``PK``).
VERSION_HEADERS: dict[str, bytes] = {"v2Pro": b"05", "v2ProPlus": b"06"}

#: md5 of the first 8192 bytes of official pretrained s2G files -> (symbol, model version, LoRA, file).
#: (The official table maps the v1 pretrained s2G488k to "v2"; the loaders' text-embedding rule then
#: makes it v1. Kept as the official table has it.)
PRETRAINED_MD5: dict[str, tuple[str, str, bool, str]] = {
    "dc3c97e17592963677a4a1681f30c653": ("v2", "v2", False, "s2G488k.pth (v1 pretrained)"),
    "6642b37f3dbb1f76882b69937c95a5f3": ("v2", "v2", False, "s2G2333k.pth (v2 pretrained)"),
    "43797be674a37c1c83ee81081941ed0f": ("v2", "v3", False, "s2Gv3.pth (v3 pretrained)"),
    "4f26b9476d0c5033e04162c486074374": ("v2", "v4", False, "s2Gv4.pth (v4 pretrained)"),
    "c7e9fce2223f3db685cdfa1e6368728a": ("v2", "v2Pro", False, "s2Gv2Pro.pth (v2Pro pretrained)"),
    "66b313e39455b57ab1b0bc0b239c9d0a": ("v2", "v2ProPlus", False, "s2Gv2ProPlus.pth (v2ProPlus pretrained)"),
}


@dataclass(frozen=True)
class OfficialVersion:
    """What the official version detection says about a file.

    `symbols_version` is the text symbol table ("v1"/"v2"), `model_version` the SoVITS model
    ("v1", "v2", "v3", "v4", "v2Pro", "v2ProPlus"), `rule` a human-readable reason.
    """

    symbols_version: str
    model_version: str
    is_lora: bool
    rule: str

    def as_tuple(self) -> tuple[str, str, bool]:
        """The official return value `(version, model_version, if_lora)`."""
        return (self.symbols_version, self.model_version, self.is_lora)


def version_from_header_and_size(head: bytes, size: int, md5_prefix: str | None = None) -> OfficialVersion:
    """Apply the official rules to already-read facts: `head` (first 2+ bytes), total `size` in bytes
    and, if known, the md5 hex digest of the first 8192 bytes."""
    if md5_prefix is not None and md5_prefix in PRETRAINED_MD5:
        sym, model, lora, name = PRETRAINED_MD5[md5_prefix]
        return OfficialVersion(sym, model, lora, f"md5 of the first 8192 bytes is the official {name}")
    magic = bytes(head[:2])
    if magic != b"PK":
        if magic not in HEADER_VERSIONS:
            raise CheckpointError(
                f"unknown SoVITS file header {magic!r}: neither a zip ('PK') nor a version header "
                f"({', '.join(h.decode() for h in HEADER_VERSIONS)})"
            )
        sym, model, lora = HEADER_VERSIONS[magic]
        return OfficialVersion(sym, model, lora, f"header {magic.decode()}")
    kib = size / 1024
    if size < V1_SIZE_LIMIT:
        return OfficialVersion("v1", "v1", False, f"plain zip of {kib:,.1f} KiB < 82,978 KiB")
    if size < V2_SIZE_LIMIT:
        return OfficialVersion("v2", "v2", False, f"plain zip of {kib:,.1f} KiB in [82,978 KiB, 700 MiB)")
    return OfficialVersion("v2", "v3", False, f"plain zip of {kib:,.1f} KiB >= 700 MiB")


def size_rule_note(detected: OfficialVersion, version: str) -> str | None:
    """One line explaining a disagreement between the official size-based detection and `version`.

    The official loader guesses the version of a plain zip (no version header) from its file size alone,
    so a model of a non-official size is misdetected; such a model has non-official layer shapes and
    does not load into the official inference in any case. None when there is nothing to explain.
    """
    if not detected.rule.startswith("plain zip") or detected.model_version == version:
        return None
    return (
        f"the official loader guesses a plain zip's version from its file size alone, so this model of "
        f"non-official size reads as {detected.model_version} there; a model of this size has non-official "
        f"layer shapes and does not load in the official inference anyway (it is a {version} model here)"
    )


def detect_sovits_version(path: Path | str) -> OfficialVersion:
    """Detect a SoVITS weight file's version exactly as the official web UI does (no loading).

    Raises `CheckpointError` for a missing/empty file or an unknown header.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: empty file")
    with open(path, "rb") as fh:
        prefix = fh.read(HASH_PREFIX_BYTES)
    md5 = hashlib.md5(prefix, usedforsecurity=False).hexdigest()
    try:
        return version_from_header_and_size(prefix, size, md5)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def loader_version(detected: OfficialVersion, weight: Mapping[str, Any]) -> str:
    """The model version the official loaders finally use for an exported file.

    Pro versions come from the header; otherwise `enc_p.text_embedding.weight` with 322 rows is v1,
    anything else v2 (v3/v4 are kept as detected).
    """
    if "Pro" in detected.model_version or detected.model_version in {"v3", "v4"}:
        return detected.model_version
    emb = weight.get(TEXT_EMBEDDING_KEY)
    if emb is None or not hasattr(emb, "shape"):
        raise CheckpointError(f"weights have no '{TEXT_EMBEDDING_KEY}': not a SoVITS generator")
    return "v1" if int(emb.shape[0]) == V1_TEXT_EMBEDDING_ROWS else "v2"


def infer_version_from_weights(weight: Mapping[str, Any]) -> str:
    """The generator version implied by tensor shapes alone (for files without config or header).

    ``sv_emb.*`` present -> Pro; ``dec.conv_pre`` with 768 output channels -> v2ProPlus; a 322-row text
    embedding -> v1; otherwise v2.
    """
    emb = weight.get(TEXT_EMBEDDING_KEY)
    if emb is None or not hasattr(emb, "shape"):
        raise CheckpointError(f"weights have no '{TEXT_EMBEDDING_KEY}': not a SoVITS v1/v2 generator")
    if any(k.startswith("sv_emb.") for k in weight):
        conv_pre = weight.get("dec.conv_pre.weight")
        if conv_pre is not None and int(conv_pre.shape[0]) == 768:
            return "v2ProPlus"
        return "v2Pro"
    return "v1" if int(emb.shape[0]) == V1_TEXT_EMBEDDING_ROWS else "v2"


def require_same_version(state: Mapping[str, Any], expected: str, *, role: str, what: str) -> None:
    """Refuse to initialise a `expected`-version model from weights of another version (clear error,
    never a partial load): v2 weights lack the Pro speaker-verification layers and have another style
    width (gin 512 vs 1024); a v2 discriminator has 6 sub-discriminators, a Pro one 8.

    Args:
        state: generator or discriminator tensors.
        expected: the configured `model.version`.
        role: "generator" or "discriminator".
        what: the file, for the message.
    Raises:
        CheckpointError: the weights are of another version (only decided where the shapes tell).
    """
    pro = "Pro" in expected
    if role == "generator":
        if TEXT_EMBEDDING_KEY not in state:
            return  # not a generator; the strict key report says so
        found = infer_version_from_weights(state)
        if ("Pro" in found) != pro:  # Pro vs ProPlus differ in decoder shapes: the strict load names them
            raise CheckpointError(
                f"{what}: holds {found} generator weights, but model.version is {expected}; "
                f"initialise a {expected} model from {expected} weights (`gsv-train download-pretrained "
                f"--version {expected}`), or set model.version: {found}"
            )
        return
    subs = {k.split(".")[1] for k in state if k.startswith("discriminators.")}
    if len(subs) in (6, 8) and (len(subs) == 8) != pro:
        found = "v2Pro/v2ProPlus" if len(subs) == 8 else "v1/v2"
        raise CheckpointError(
            f"{what}: holds a {found} discriminator ({len(subs)} sub-discriminators), but model.version is "
            f"{expected}; use the {expected} s2D file (`gsv-train download-pretrained --version {expected}`)"
        )
