"""Transcript files: GPT-SoVITS `.list`, LJSpeech `metadata.csv`, and sidecar `<name>.txt` / `<name>.lab`.

Formats (UTF-8; a UTF-8 byte-order mark is accepted):

- `.list` (official, facts §1): ``path|speaker|LANG|text``. `path` may be absolute or relative to the
  list's folder (then to the working directory). LANG is one of the official tags (ZH, JA/JP, EN, KO,
  YUE in any case) and is mapped to zh, ja, en, ko, yue. A file with another extension whose first line
  has this shape is read as a `.list` too.
- LJSpeech: ``id|text`` or ``id|text|normalized text``; the normalized text is used when present (it
  spells out numbers and abbreviations). `id` is a file stem; the audio is looked for as
  ``<folder>/wavs/<id>.<ext>`` and ``<folder>/<id>.<ext>`` beside the transcript file.
- Sidecar: ``a.txt`` or ``a.lab`` beside ``a.wav``; its whole text (lines joined by spaces).

Problems never stop a run; each becomes a `Skipped` item naming ``file:line``: a line that is not UTF-8
(with its byte offset; the other lines are used), a malformed line, an unknown language tag, a duplicate
id (the first occurrence wins), an empty text, a line whose audio file does not exist.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from gptsovits_train.audio.io import AV_EXTENSIONS, SNDFILE_EXTENSIONS
from gptsovits_train.data.report_types import Skipped

LOG = logging.getLogger(__name__)

#: Official `.list` language tags (lower-cased) -> language code (GPT-SoVITS 1-get-text.py).
LANGUAGE_TAGS: dict[str, str] = {"zh": "zh", "jp": "ja", "ja": "ja", "en": "en", "ko": "ko", "yue": "yue"}
SIDECAR_SUFFIXES: tuple[str, ...] = (".txt", ".lab")
STAGE = "transcripts"


def map_language(tag: str) -> str | None:
    """Official `.list` language tag -> language code, or None when the tag is unknown."""
    return LANGUAGE_TAGS.get(tag.strip().lower())


@dataclass(frozen=True)
class TranscriptEntry:
    """One transcript line.

    Attributes:
        key: the audio reference as written (a path for `.list`, an id for LJSpeech).
        text: the transcript ("" only for an unfilled template line, reported as empty).
        language: language code from the line, or None (the caller's default applies).
        speaker: speaker from the line, or None.
        origin: ``file:line`` for messages.
        candidates: where the audio may be, most likely first (resolved absolute paths).
        by_name: match inputs on the file name (`.list`, as the official tools do) or on the stem (ids).
    """

    key: str
    text: str
    language: str | None
    speaker: str | None
    origin: str
    candidates: tuple[Path, ...]
    by_name: bool

    @property
    def match_name(self) -> str:
        return Path(self.key.replace("\\", "/")).name if self.by_name else self.key


@dataclass
class TranscriptSet:
    """All entries of the given transcript files plus the problems met while reading them."""

    entries: list[TranscriptEntry] = field(default_factory=list)
    problems: list[Skipped] = field(default_factory=list)

    def extend(self, other: TranscriptSet) -> None:
        self.entries.extend(other.entries)
        self.problems.extend(other.problems)


def _read_utf8(path: Path) -> tuple[str | None, Skipped | None]:
    """The whole text of a sidecar (one transcript: a bad byte anywhere rejects it)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, Skipped(str(path), f"cannot read transcript file ({exc.strerror})", STAGE)
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        return None, Skipped(str(path), _not_utf8(raw, exc.start, "transcript file"), STAGE)


def _not_utf8(raw: bytes, offset: int, what: str) -> str:
    bad = raw[offset : offset + 1].hex()
    return (
        f"{what} is not UTF-8 (byte 0x{bad} at offset {offset}); "
        "re-save it as UTF-8, e.g. `iconv -f GBK -t UTF-8`"
    )


def _read_lines(path: Path) -> tuple[list[tuple[int, str]], list[Skipped]]:
    """(line number, text) of every line of a transcript file, and the lines that could not be read.

    A UTF-8 file is split like `str.splitlines`. Otherwise each ``\n``-terminated line is decoded on its
    own: a line that is not UTF-8 is skipped with its file offset and every other line is kept; when
    no line decodes (or the file holds NUL bytes: UTF-16, binary), the file is reported once.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return [], [Skipped(str(path), f"cannot read transcript file ({exc.strerror})", STAGE)]
    try:
        return list(enumerate(raw.decode("utf-8-sig").splitlines(), start=1)), []
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    if b"\x00" in raw:  # UTF-16/32 or binary: no line of it is text
        return [], [Skipped(str(path), _not_utf8(raw, first_bad, "transcript file"), STAGE)]
    lines: list[tuple[int, str]] = []
    problems: list[Skipped] = []
    offset = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    for lineno, chunk in enumerate(raw[offset:].split(b"\n"), start=1):
        try:
            lines.append((lineno, chunk.decode("utf-8").rstrip("\r")))
        except UnicodeDecodeError as exc:
            reason = _not_utf8(raw, offset + exc.start, "line") + "; line skipped"
            problems.append(Skipped(f"{path}:{lineno}", reason, STAGE))
        offset += len(chunk) + 1
    if not any(text.strip() for _, text in lines):
        return [], [Skipped(str(path), _not_utf8(raw, first_bad, "transcript file"), STAGE)]
    return lines, problems


def _looks_like_list(first_line: str) -> bool:
    parts = first_line.split("|")
    return len(parts) == 4 and map_language(parts[2]) is not None


def _list_candidates(raw: str, base: Path) -> tuple[Path, ...]:
    p = Path(raw.strip())
    if p.is_absolute():
        return (p,)
    return ((base / p).absolute(), p.absolute())


def _id_candidates(key: str, base: Path) -> tuple[Path, ...]:
    exts = sorted(SNDFILE_EXTENSIONS) + sorted(AV_EXTENSIONS)  # libsndfile's formats first, as before
    return tuple((base / "wavs" / f"{key}{e}").absolute() for e in exts) + tuple(
        (base / f"{key}{e}").absolute() for e in exts
    )


def read_transcript_file(path: Path | str) -> TranscriptSet:
    """Parse one `.list` or LJSpeech transcript file (format by extension, else by its first line)."""
    path = Path(path)
    out = TranscriptSet()
    lines, problems = _read_lines(path)
    out.problems.extend(problems)
    first = next((ln for _, ln in lines if ln.strip()), "")
    is_list = path.suffix.lower() == ".list" or _looks_like_list(first)
    base = path.parent.absolute()
    seen: dict[str, str] = {}
    for lineno, line in lines:
        if not line.strip():
            continue
        origin = f"{path}:{lineno}"
        if is_list:
            parts = line.split("|", 3)
            if len(parts) != 4:
                out.problems.append(
                    Skipped(origin, "malformed .list line (expected path|speaker|LANG|text)", STAGE)
                )
                continue
            key, speaker, tag, body = (s.strip() for s in parts)
            language = map_language(tag)
            if language is None:
                out.problems.append(
                    Skipped(origin, f"unknown language tag {tag!r} (expected ZH, JA, EN, KO or YUE)", STAGE)
                )
                continue
            entry = TranscriptEntry(
                key, body, language, speaker or None, origin, _list_candidates(key, base), True
            )
        else:
            parts = line.split("|")
            if len(parts) not in (2, 3) or not parts[0].strip():
                out.problems.append(
                    Skipped(origin, "malformed metadata line (expected id|text or id|text|normalized)", STAGE)
                )
                continue
            key = parts[0].strip()
            body = parts[2].strip() if len(parts) == 3 and parts[2].strip() else parts[1].strip()
            entry = TranscriptEntry(key, body, None, None, origin, _id_candidates(key, base), False)
        dup_key = entry.match_name if not is_list else str(entry.candidates[0])
        if dup_key in seen:
            out.problems.append(
                Skipped(origin, f"duplicate id {entry.key!r} (first at {seen[dup_key]}); line ignored", STAGE)
            )
            continue
        seen[dup_key] = origin
        out.entries.append(entry)
    return out


def read_sidecar(audio: Path) -> tuple[str | None, Path | None, Skipped | None]:
    """Text of `<stem>.txt` / `<stem>.lab` beside `audio`.

    Returns (text, sidecar path, problem): all None when there is no sidecar; `problem` is set (and
    text None) for an unreadable or non-UTF-8 sidecar.
    """
    for suffix in SIDECAR_SUFFIXES:
        side = audio.with_suffix(suffix)
        if side.is_file():
            text, problem = _read_utf8(side)
            if problem is not None or text is None:
                return None, side, problem
            return " ".join(ln.strip() for ln in text.splitlines() if ln.strip()), side, None
    return None, None, None
