"""Pretrained files from the Hugging Face repo `lj1995/GPT-SoVITS`: chinese-hubert-base, SoVITS s2G/s2D and
(with `gpt=True`) the GPT stage's s1 file and chinese-roberta-wwm-ext-large.

`download_pretrained(dest, version)` fetches each file through `huggingface_hub.hf_hub_download` (the
standard Hugging Face cache, its progress bars, `HF_HUB_OFFLINE`, `HF_ENDPOINT`, tokens), then copies it
to ``<dest>/<path in the repo>`` and records its sha256 and size in ``<dest>/gsv-pretrained.json`` (the
cache keeps its copy; delete it with `hf cache` tools when disk space matters). A file already
in `dest` whose sha256 matches the record is reused without any network access. For files stored with
Git LFS the cache names the blob by its sha256; a download whose content does not hash to that name is
refused as corrupt.

Paths in the repo (official `config.py`, facts §4.4):

| version | SoVITS G / D |
|---|---|
| v1 | `s2G488k.pth`, `s2D488k.pth` |
| v2 | `gsv-v2final-pretrained/s2G2333k.pth`, `gsv-v2final-pretrained/s2D2333k.pth` |
| v2Pro | `v2Pro/s2Gv2Pro.pth`, `v2Pro/s2Dv2Pro.pth` |
| v2ProPlus | `v2Pro/s2Gv2ProPlus.pth`, `v2Pro/s2Dv2ProPlus.pth` |

plus `chinese-hubert-base/{config.json, preprocessor_config.json, pytorch_model.bin}` for every version,
and for v2Pro/v2ProPlus the speaker-verification model `sv/pretrained_eres2netv2w24s4ep4.ckpt` (official
`GPT_SoVITS/pretrained_models/sv/`, hard-coded there; `prepare --sv`).

GPT stage (`gpt=True`; official `config.py: pretrained_gpt_name`, gpt-stage facts §13):

| version | s1 (GPT) |
|---|---|
| v1 | `s1bert25hz-2kh-longer-epoch=68e-step=50232.ckpt` |
| v2 | `gsv-v2final-pretrained/s1bert25hz-5kh-longer-epoch=12-step=369668.ckpt` |
| v2Pro, v2ProPlus | `s1v3.ckpt` |

plus `chinese-roberta-wwm-ext-large/{config.json, tokenizer.json, pytorch_model.bin}` (BERT features of
zh clips, `prepare.bert.model`) for every version.

The license of these weights was not checked (facts: "a separate matter"); they are fetched for the
user from the official repo, not redistributed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from gptsovits_train.errors import GsvError
from gptsovits_train.fileio import atomic_write_json

LOG = logging.getLogger(__name__)

HF_REPO = "lj1995/GPT-SoVITS"
RECORD_NAME = "gsv-pretrained.json"
RECORD_FORMAT = 1
HUBERT_SUBDIR = "chinese-hubert-base"
HUBERT_FILES: tuple[str, ...] = (
    f"{HUBERT_SUBDIR}/config.json",
    f"{HUBERT_SUBDIR}/preprocessor_config.json",
    f"{HUBERT_SUBDIR}/pytorch_model.bin",
)
SOVITS_FILES: dict[str, tuple[str, str]] = {
    "v1": ("s2G488k.pth", "s2D488k.pth"),
    "v2": ("gsv-v2final-pretrained/s2G2333k.pth", "gsv-v2final-pretrained/s2D2333k.pth"),
    "v2Pro": ("v2Pro/s2Gv2Pro.pth", "v2Pro/s2Dv2Pro.pth"),
    "v2ProPlus": ("v2Pro/s2Gv2ProPlus.pth", "v2Pro/s2Dv2ProPlus.pth"),
}
VERSIONS: tuple[str, ...] = tuple(SOVITS_FILES)
#: the ERes2NetV2 speaker-verification weights of v2Pro/v2ProPlus (`7-sv_cn` features)
SV_FILE = "sv/pretrained_eres2netv2w24s4ep4.ckpt"
SV_VERSIONS = frozenset({"v2Pro", "v2ProPlus"})


BERT_SUBDIR = "chinese-roberta-wwm-ext-large"
BERT_FILES: tuple[str, ...] = (
    f"{BERT_SUBDIR}/config.json",
    f"{BERT_SUBDIR}/tokenizer.json",
    f"{BERT_SUBDIR}/pytorch_model.bin",
)
GPT_FILES: dict[str, str] = {
    "v1": "s1bert25hz-2kh-longer-epoch=68e-step=50232.ckpt",
    "v2": "gsv-v2final-pretrained/s1bert25hz-5kh-longer-epoch=12-step=369668.ckpt",
    "v2Pro": "s1v3.ckpt",
    "v2ProPlus": "s1v3.ckpt",
}

Role = Literal["hubert", "s2G", "s2D", "sv", "s1", "bert"]


@dataclass(frozen=True)
class PretrainedFile:
    """One file of the repo and what it is for."""

    repo_path: str
    role: Role


@dataclass(frozen=True)
class FetchedFile:
    """A file placed in `dest`.

    Attributes:
        repo_path: path in the repo (and under `dest`).
        role: hubert, s2G, s2D, s1 (GPT) or bert.
        path: the local file.
        sha256: hex digest of its content.
        size: bytes.
        revision: repo commit it came from (None when unknown).
        reused: True when it was already in `dest` with the recorded sha256 (no hub access).
    """

    repo_path: str
    role: Role
    path: Path
    sha256: str
    size: int
    revision: str | None
    reused: bool


@dataclass
class PretrainedSet:
    """The pretrained files of one version in `dest`."""

    dest: Path
    version: str
    files: list[FetchedFile] = field(default_factory=list)

    def _by_role(self, role: Role) -> Path | None:
        return next((f.path for f in self.files if f.role == role), None)

    @property
    def hubert_dir(self) -> Path | None:
        """The chinese-hubert-base folder (`--hubert`), when it is part of the set."""
        return self.dest / HUBERT_SUBDIR if any(f.role == "hubert" for f in self.files) else None

    @property
    def s2g(self) -> Path | None:
        return self._by_role("s2G")

    @property
    def s1(self) -> Path | None:
        """The pretrained GPT (s1) file, when it is part of the set."""
        return self._by_role("s1")

    @property
    def bert_dir(self) -> Path | None:
        """The chinese-roberta-wwm-ext-large folder (`prepare.bert.model`), when it is part of the set."""
        return self.dest / BERT_SUBDIR if any(f.role == "bert" for f in self.files) else None

    @property
    def s2d(self) -> Path | None:
        return self._by_role("s2D")

    @property
    def sv_file(self) -> Path | None:
        """The speaker-verification weights (`prepare --sv`), v2Pro/v2ProPlus sets only."""
        return self._by_role("sv")

    @property
    def record_path(self) -> Path:
        return self.dest / RECORD_NAME


def pretrained_files(
    version: str = "v2", *, hubert: bool = True, sovits: bool = True, sv: bool = True, gpt: bool = False
) -> list[PretrainedFile]:
    """The repo files of `version` (HuBERT first, then G and D, then the sv model of v2Pro/v2ProPlus, then
    with `gpt` the s1 file and BERT)."""
    if version not in SOVITS_FILES:
        raise GsvError(f"unknown version {version!r}; one of {', '.join(VERSIONS)}")
    out: list[PretrainedFile] = []
    if hubert:
        out += [PretrainedFile(p, "hubert") for p in HUBERT_FILES]
    if sovits:
        g, d = SOVITS_FILES[version]
        out += [PretrainedFile(g, "s2G"), PretrainedFile(d, "s2D")]
    if sv and version in SV_VERSIONS:
        out.append(PretrainedFile(SV_FILE, "sv"))
    if gpt:
        out += [PretrainedFile(GPT_FILES[version], "s1")]
        out += [PretrainedFile(p, "bert") for p in BERT_FILES]
    return out


def default_pretrained_dir() -> Path:
    """`$GSV_TRAIN_PRETRAINED`, else `$XDG_CACHE_HOME/gsv-train/pretrained` (`~/.cache/...`)."""
    env = os.environ.get("GSV_TRAIN_PRETRAINED")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "gsv-train" / "pretrained"


def size_of(entry: dict[str, Any]) -> int:
    return int(entry["size"])


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_record(dest: Path) -> dict[str, Any]:
    path = dest / RECORD_NAME
    if not path.is_file():
        return {"format": RECORD_FORMAT, "repo": HF_REPO, "files": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        LOG.warning("ignoring unreadable %s (%s); files will be verified again", path, exc)
        return {"format": RECORD_FORMAT, "repo": HF_REPO, "files": {}}
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return {"format": RECORD_FORMAT, "repo": HF_REPO, "files": {}}
    return data


def _offline_mode() -> bool:
    from huggingface_hub import constants

    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _cache_location(cache_dir: Path | None) -> str:
    if cache_dir is not None:
        return str(cache_dir)
    from huggingface_hub import constants

    return str(getattr(constants, "HF_HUB_CACHE", "~/.cache/huggingface/hub"))


def _hub_fetch(
    repo_path: str, revision: str | None, cache_dir: Path | None, local_files_only: bool, dest: Path
) -> Path:
    """`hf_hub_download` with its errors turned into one-line `GsvError`s; returns the cached file."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # huggingface_hub logs every retry of an unreachable host as a warning (twice through its own
    # handler); the outcome is reported here as one line instead.
    http_log = logging.getLogger("huggingface_hub.utils._http")
    level = http_log.level
    http_log.setLevel(logging.ERROR)
    try:
        return Path(
            hf_hub_download(
                HF_REPO,
                repo_path,
                revision=revision,
                cache_dir=str(cache_dir) if cache_dir is not None else None,
                local_files_only=local_files_only,
            )
        )
    except LocalEntryNotFoundError:
        why = (
            "offline mode (--offline / HF_HUB_OFFLINE=1)"
            if local_files_only or _offline_mode()
            else "huggingface.co cannot be reached"
        )
        raise GsvError(
            f"cannot get {repo_path} from {HF_REPO}: {why} and it is not in the Hugging Face cache "
            f"({_cache_location(cache_dir)}); connect to the internet, or copy the file to {dest / repo_path}"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GsvError(f"cannot get {repo_path} from {HF_REPO}: {first}") from None
    except HfHubHTTPError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GsvError(f"download of {repo_path} from {HF_REPO} failed: {first}") from None
    finally:
        http_log.setLevel(level)


def _revision_of(cached: Path) -> str | None:
    """The commit in `.../snapshots/<commit>/<path>` (None for other layouts)."""
    parts = cached.parts
    if "snapshots" in parts:
        i = len(parts) - 1 - parts[::-1].index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None


def _place(blob: Path, target: Path) -> None:
    """Copy `blob` to `target` atomically.

    A copy, not a hard link: a link would share the cache's inode, so anything that rewrote the file in
    `dest` would silently change the Hugging Face cache too.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        shutil.copyfile(blob, tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def download_pretrained(
    dest: Path | str | None = None,
    version: str = "v2",
    *,
    revision: str | None = None,
    cache_dir: Path | str | None = None,
    local_files_only: bool = False,
    hubert: bool = True,
    sovits: bool = True,
    sv: bool = True,
    gpt: bool = False,
) -> PretrainedSet:
    """Fetch the pretrained files of `version` into `dest` (see module doc).

    Args:
        dest: target folder (default `default_pretrained_dir()`).
        version: v1, v2, v2Pro or v2ProPlus.
        revision: repo branch, tag or commit (default: main).
        cache_dir: Hugging Face cache folder (default: the HF default, `HF_HUB_CACHE`).
        local_files_only: never contact the hub (only the cache and `dest`).
        hubert / sovits / sv / gpt: which part to fetch (sv: v2Pro/v2ProPlus only; gpt: the s1 file and
            chinese-roberta-wwm-ext-large).
    Returns:
        the files, with their sha256; also recorded in `<dest>/gsv-pretrained.json`.
    Raises:
        GsvError: one line per failure (offline and not cached, unknown file, corrupt download, disk).
    """
    dest = Path(dest).expanduser() if dest is not None else default_pretrained_dir()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    wanted = pretrained_files(version, hubert=hubert, sovits=sovits, sv=sv, gpt=gpt)
    record = _read_record(dest)
    result = PretrainedSet(dest=dest, version=version)
    for n, item in enumerate(wanted, start=1):
        target = dest / item.repo_path
        entry = record["files"].get(item.repo_path)
        if isinstance(entry, dict) and target.is_file() and target.stat().st_size == entry.get("size"):
            digest = sha256_file(target)
            if digest == entry.get("sha256"):
                LOG.info("[%d/%d] %s: already in %s (sha256 ok)", n, len(wanted), item.repo_path, dest)
                rev = entry.get("revision")
                result.files.append(
                    FetchedFile(item.repo_path, item.role, target, digest, size_of(entry), rev, True)
                )
                continue
            LOG.warning("%s does not match its recorded sha256; fetching it again", target)
        LOG.info("[%d/%d] %s from %s", n, len(wanted), item.repo_path, HF_REPO)
        cached = _hub_fetch(item.repo_path, revision, cache, local_files_only, dest)
        blob = cached.resolve()
        try:
            _place(blob, target)
        except OSError as exc:
            raise GsvError(f"cannot write {target}: {exc.strerror or exc}") from None
        digest = sha256_file(target)
        is_sha256 = len(blob.name) == 64 and all(c in "0123456789abcdef" for c in blob.name)
        lfs_sha = blob.name if is_sha256 else None
        if lfs_sha is not None and lfs_sha != digest:
            target.unlink(missing_ok=True)
            raise GsvError(
                f"{item.repo_path}: the cached download is corrupt (sha256 {digest[:12]}…, expected "
                f"{lfs_sha[:12]}…); delete {blob} and run download-pretrained again"
            )
        size = target.stat().st_size
        rev = _revision_of(cached)
        fetched = FetchedFile(item.repo_path, item.role, target, digest, size, rev, False)
        result.files.append(fetched)
        record["files"][item.repo_path] = {
            "role": item.role,
            "sha256": digest,
            "size": size,
            "revision": rev,
            "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        record["repo"] = HF_REPO
        atomic_write_json(dest / RECORD_NAME, record)
    versions = set(record.get("versions") or [])
    if hubert and sovits:
        versions.add(version)
    record["versions"] = sorted(versions)
    atomic_write_json(dest / RECORD_NAME, record)
    return result


def find_pretrained(dest: Path | str | None = None, version: str = "v2") -> PretrainedSet | None:
    """The files of `version` already downloaded into `dest`, checked by size against the record.

    Returns None unless every file of the version (HuBERT, G and D) is present with its recorded size.
    Reads no file content (fast); `download_pretrained` verifies the sha256.
    """
    dest = Path(dest).expanduser() if dest is not None else default_pretrained_dir()
    record_files = _read_record(dest)["files"]
    out = PretrainedSet(dest=dest, version=version)
    for item in pretrained_files(version):
        entry = record_files.get(item.repo_path)
        target = dest / item.repo_path
        if not isinstance(entry, dict) or not target.is_file() or target.stat().st_size != entry.get("size"):
            return None
        out.files.append(
            FetchedFile(
                item.repo_path,
                item.role,
                target,
                str(entry.get("sha256")),
                int(entry["size"]),
                entry.get("revision"),
                True,
            )
        )
    return out


def _recorded(dest: Path, repo_paths: tuple[str, ...] | list[str]) -> bool:
    """Every file of `repo_paths` is in `dest` with the size its record says (no content read)."""
    files = _read_record(dest)["files"]
    for rel in repo_paths:
        entry = files.get(rel)
        target = dest / rel
        if not isinstance(entry, dict) or not target.is_file() or target.stat().st_size != entry.get("size"):
            return False
    return True


def find_bert(dest: Path | str | None = None) -> Path | None:
    """The downloaded chinese-roberta-wwm-ext-large folder in `dest` (checked by size), or None."""
    dest = Path(dest).expanduser() if dest is not None else default_pretrained_dir()
    return dest / BERT_SUBDIR if _recorded(dest, BERT_FILES) else None


def find_s1(dest: Path | str | None = None, version: str = "v2") -> Path | None:
    """The downloaded pretrained GPT (s1) file of `version` in `dest` (checked by size), or None."""
    if version not in GPT_FILES:
        raise GsvError(f"unknown version {version!r}; one of {', '.join(VERSIONS)}")
    dest = Path(dest).expanduser() if dest is not None else default_pretrained_dir()
    return dest / GPT_FILES[version] if _recorded(dest, [GPT_FILES[version]]) else None
