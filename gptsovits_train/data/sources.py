"""Which audio files a `prepare` run uses, their clip ids, and the transcript each one gets.

Inputs are files and folders (searched recursively for .wav/.flac/.mp3/.ogg/.opus, any case). A file's
base id is its stem; inside a folder input it is the path relative to that folder without the
extension, with `/` written as `__` (so `spk1/a.wav` -> `spk1__a`). Characters other than letters,
digits, `.`, `-` and `_` become `_`. Two sources with the same id: the later one (in sorted order) is
skipped with a "duplicate id" reason.

When no input is given, the sources are the audio files the transcript entries point to.

Transcripts are matched to sources by exact path, else by file name (`.list`, like the official tools,
which only keep the base name) or by stem (LJSpeech ids); a source without a matching line uses its
sidecar `<stem>.txt` / `<stem>.lab` when there is one.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gptsovits_train.audio.io import AUDIO_EXTENSIONS
from gptsovits_train.data.report_types import Skipped, WarningItem
from gptsovits_train.data.transcripts import (
    STAGE,
    TranscriptEntry,
    TranscriptSet,
    read_sidecar,
    read_transcript_file,
)
from gptsovits_train.errors import GsvError

LOG = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^\w.\-]+")


@dataclass(frozen=True)
class Transcript:
    """The text of one source: text ("" = line present but empty), language code, speaker, origin."""

    text: str
    language: str
    speaker: str
    origin: str


@dataclass(frozen=True)
class Source:
    """One audio file to process.

    Attributes:
        path: absolute path.
        id: base clip id (unique in the run).
        transcript: its transcript, or None.
        speaker: speaker of its clips (the transcript's, else the run default / parent folder name).
        language: language of its clips (the transcript's, else the run default).
    """

    path: Path
    id: str
    transcript: Transcript | None
    speaker: str
    language: str

    @property
    def key(self) -> str:
        """Stable file-system name of this source's progress record (hash of its path)."""
        return hashlib.sha256(str(self.path).encode("utf-8")).hexdigest()[:24]


@dataclass
class SourcePlan:
    """Result of `collect_sources`: usable sources, and what was dropped or noted on the way."""

    sources: list[Source] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[WarningItem] = field(default_factory=list)

    @property
    def n_with_transcript(self) -> int:
        return sum(1 for s in self.sources if s.transcript is not None and s.transcript.text)


def safe_id(text: str) -> str:
    """A file-system-safe clip id: unsafe characters become `_` (letters of any script are kept)."""
    out = _UNSAFE.sub("_", text).strip("._")
    return out or "clip"


def is_audio_path(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def discover_audio(inputs: Sequence[Path | str]) -> tuple[list[tuple[Path, str]], list[Skipped]]:
    """Audio files under `inputs` as (absolute path, base id), in input order then sorted path order.

    Raises:
        GsvError: an input does not exist.
    """
    found: list[tuple[Path, str]] = []
    skipped: list[Skipped] = []
    seen: set[Path] = set()
    for raw in inputs:
        root = Path(raw).absolute()
        if not root.exists():
            raise GsvError(f"input not found: {raw}")
        if root.is_file():
            if not is_audio_path(root):
                skipped.append(Skipped(str(root), f"not an audio file extension ({root.suffix or 'none'})"))
                continue
            items = [(root, safe_id(root.stem))]
        else:
            files = sorted(p for p in root.rglob("*") if p.is_file() and is_audio_path(p))
            items = [(p, safe_id("__".join(p.relative_to(root).with_suffix("").parts))) for p in files]
        for path, cid in items:
            if path not in seen:
                seen.add(path)
                found.append((path, cid))
    return found, skipped


def collect_sources(
    inputs: Sequence[Path | str],
    transcript_files: Sequence[Path | str] = (),
    *,
    language: str,
    speaker: str | None = None,
) -> SourcePlan:
    """Find the sources of a run and attach transcripts.

    Args:
        inputs: files/folders; may be empty when `transcript_files` point at the audio.
        transcript_files: `.list` / LJSpeech files (see `data.transcripts`).
        language: language of transcripts that do not carry one (`.list` lines do).
        speaker: speaker name for sources whose transcript has none (default: the parent folder name).
    """
    plan = SourcePlan()
    tset = TranscriptSet()
    for tf in transcript_files:
        tpath = Path(tf)
        if not tpath.is_file():
            raise GsvError(f"transcript file not found: {tf}")
        tset.extend(read_transcript_file(tpath))
    plan.skipped.extend(tset.problems)

    discovered, bad_inputs = discover_audio(inputs)
    plan.skipped.extend(bad_inputs)

    assigned: dict[Path, TranscriptEntry] = {}

    def assign(entry: TranscriptEntry, path: Path) -> bool:
        """Give `path` the transcript `entry`, unless an earlier line already named it (skipped, reported)."""
        if path in assigned:
            first = assigned[path].origin
            reason = f"duplicate id {entry.key!r} (first at {first}); line ignored"
            plan.skipped.append(Skipped(entry.origin, reason, STAGE))
            return False
        assigned[path] = entry
        return True

    if not inputs:
        for entry in tset.entries:
            path = next((c for c in entry.candidates if c.is_file()), None)
            if path is None:
                plan.skipped.append(Skipped(entry.origin, f"points to a missing file: {entry.key}", STAGE))
                continue
            if not assign(entry, path):
                continue
            discovered.append((path, safe_id(path.stem)))
    else:
        by_path = {p: p for p, _ in discovered}
        by_name: dict[str, list[Path]] = defaultdict(list)
        by_stem: dict[str, list[Path]] = defaultdict(list)
        for p, _ in discovered:
            by_name[p.name].append(p)
            by_stem[p.stem].append(p)
        outside = 0
        for entry in tset.entries:
            match = next((by_path[c] for c in entry.candidates if c in by_path), None)
            if match is None:
                pool = by_name if entry.by_name else by_stem
                hits = pool.get(entry.match_name, [])
                if len(hits) == 1:
                    match = hits[0]
                elif len(hits) > 1:
                    plan.skipped.append(
                        Skipped(
                            entry.origin, f"ambiguous: {len(hits)} inputs are named {entry.match_name}", STAGE
                        )
                    )
                    continue
            if match is None:
                if any(c.is_file() for c in entry.candidates):
                    outside += 1
                else:
                    plan.skipped.append(
                        Skipped(entry.origin, f"points to a missing file: {entry.key}", STAGE)
                    )
                continue
            assign(entry, match)
        if outside:
            plan.warnings.append(
                WarningItem(
                    "transcripts",
                    f"{outside} transcript lines refer to audio that is not among the inputs (ignored)",
                    STAGE,
                )
            )

    ids: dict[str, Path] = {}
    for path, cid in discovered:
        if cid in ids:
            plan.skipped.append(Skipped(str(path), f"duplicate id {cid!r} (also used by {ids[cid]})"))
            continue
        ids[cid] = path
        spk_default = speaker or safe_id(path.parent.name) or "speaker"
        found = assigned.get(path)
        transcript: Transcript | None = None
        if found is not None:
            transcript = Transcript(
                found.text, found.language or language, found.speaker or spk_default, found.origin
            )
        else:
            text, side, problem = read_sidecar(path)
            if problem is not None:
                plan.skipped.append(problem)
            elif text is not None and side is not None:
                transcript = Transcript(text, language, spk_default, str(side))
        plan.sources.append(
            Source(
                path,
                cid,
                transcript,
                transcript.speaker if transcript else spk_default,
                transcript.language if transcript else language,
            )
        )
    return plan
