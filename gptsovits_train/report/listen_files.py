"""The files of the listening report under `RUN_DIR/listen/`: the index and the audio.

`listen/listen.json` names the stage, the audio format and the report's clips (id, text, duration, the real
clip's file) plus facts about the run that the page shows before `summary.json` exists. The real clips are
copied once into `listen/real/`; the validation after epoch E writes the generated audio of the same clips
into `listen/epoch_EEEE/`. Nothing here is ever pruned: every validated epoch stays audible, whatever
happens to the checkpoints.

Audio formats (both play in current browsers from a local file):

- `ogg`: Ogg Vorbis at the model's 32 kHz: 0.47 MB per minute of real speech (LJSpeech), 0.59 MB per
  minute of the demo's generated audio;
- `wav`: 16-bit PCM WAV at 32 kHz, exactly 3.84 MB per minute (32000 samples/s x 2 bytes); lossless, and
  the one to choose for browsers without Ogg (Safari before 18.4).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import soundfile as sf

from gptsovits_train.errors import GsvError
from gptsovits_train.fileio import atomic_write_with

LOG = logging.getLogger(__name__)

AudioFormat = Literal["ogg", "wav"]
#: soundfile (format, subtype) of each report audio format.
SOUNDFILE_FORMATS: dict[str, tuple[str, str]] = {"ogg": ("OGG", "VORBIS"), "wav": ("WAV", "PCM_16")}
INDEX_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ListenClip:
    """A validation clip of the report: its id, its text and the real recording (a dataset file)."""

    id: str
    text: str
    audio_path: Path


@dataclass(frozen=True)
class ListenIndex:
    """What `listen/listen.json` holds."""

    stage: str
    sampling_rate: int
    audio_format: AudioFormat
    clips: list[dict[str, Any]]  # {"id", "text", "duration", "real": path relative to the run or null}
    run_info: dict[str, Any]  # label -> value, shown on the page until summary.json exists

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": INDEX_FORMAT_VERSION,
            "stage": self.stage,
            "sampling_rate": self.sampling_rate,
            "audio_format": self.audio_format,
            "clips": self.clips,
            "run_info": self.run_info,
        }

    @classmethod
    def read(cls, path: Path) -> ListenIndex:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            fmt = data["audio_format"]
            if fmt not in SOUNDFILE_FORMATS:
                raise ValueError(f"unknown audio_format {fmt!r}")
            return cls(
                stage=str(data["stage"]),
                sampling_rate=int(data["sampling_rate"]),
                audio_format=fmt,
                clips=list(data["clips"]),
                run_info=dict(data.get("run_info") or {}),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise GsvError(f"{path}: not a readable listening-report index ({exc})") from None


def write_audio(path: Path, wave: np.ndarray, sampling_rate: int, audio_format: AudioFormat) -> Path:
    """Write a mono float waveform (L,), clipped to [-1, 1], in the report's format (atomically)."""
    fmt, subtype = SOUNDFILE_FORMATS[audio_format]
    data = np.clip(np.asarray(wave, dtype=np.float32).reshape(-1), -1.0, 1.0)

    def write(fh: IO[bytes]) -> None:
        sf.write(fh, data, sampling_rate, format=fmt, subtype=subtype)

    return atomic_write_with(path, write, fsync=False)


def to_mono(wave: np.ndarray) -> np.ndarray:
    return wave.mean(axis=1) if wave.ndim == 2 else wave
