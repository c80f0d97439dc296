"""Audio input/output: decode audio files to float32 mono, resample, write 16-bit PCM WAV.

wav, flac, mp3, ogg and opus are decoded by libsndfile (`soundfile`); m4a/aac (phone voice memos),
webm and wma by FFmpeg's decoders as bundled in the PyAV wheel (`av`; no system ffmpeg). Both run
in-process, so no decoder process is started per file.
Every problem with one file raises `AudioLoadError` with a one-line, specific reason (empty file,
truncated WAV, undecodable data, NaN/Inf samples, ...); the caller records it and moves on.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from gptsovits_train.errors import GsvError
from gptsovits_train.fileio import atomic_write_bytes

LOG = logging.getLogger(__name__)

#: Extensions (lower case, with the dot) decoded by libsndfile.
SNDFILE_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".mp3", ".ogg", ".opus")
#: Extensions decoded by PyAV (compressed formats libsndfile cannot read).
AV_EXTENSIONS: tuple[str, ...] = (".m4a", ".aac", ".webm", ".wma")
#: File extensions that `prepare` treats as audio.
AUDIO_EXTENSIONS: frozenset[str] = frozenset(SNDFILE_EXTENSIONS + AV_EXTENSIONS)
#: The supported extensions as a user reads them ("wav, flac, ...").
AUDIO_EXTENSIONS_TEXT = ", ".join(e.lstrip(".") for e in SNDFILE_EXTENSIONS + AV_EXTENSIONS)

#: soxr quality used for every resampling ("HQ": 20-bit precision, the "high quality" preset).
RESAMPLE_QUALITY = "HQ"


class AudioLoadError(GsvError):
    """One audio file cannot be used; the message is the reason recorded in the report."""


@dataclass
class LoadedAudio:
    """A decoded file.

    Attributes:
        samples: (L,) float32 mono waveform, the mean of the channels, at `sample_rate`.
        sample_rate: rate of the file.
        channels: channel count of the file.
        subtype: libsndfile subtype (`PCM_16`, `PCM_U8`, `FLOAT`, `VORBIS`, ...), or the codec name
            for files decoded by PyAV (`aac`, `opus`, `wmav2`, ...).
        warnings: things that were accepted but worth telling the user (8-bit audio, surround downmix).
    """

    samples: np.ndarray
    sample_rate: int
    channels: int
    subtype: str
    warnings: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.samples.shape[0] / self.sample_rate


def _wav_truncation(path: Path, file_size: int) -> str | None:
    """For RIFF WAV files, compare the declared `data` chunk size with the bytes actually present.

    libsndfile silently reads a truncated WAV as a shorter one; the header tells the truth.
    Returns a reason string when the file is truncated, else None.
    """
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None  # RF64/W64/other containers: leave it to libsndfile
        pos = 12
        while True:
            fh.seek(pos)
            chunk = fh.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                available = file_size - (pos + 8)
                # 0 and 0xFFFFFFFF are "unknown length" placeholders written by streaming encoders.
                if size not in (0, 0xFFFFFFFF) and size > available:
                    return f"truncated WAV: header declares {size} bytes of audio, file holds {available}"
                return None
            pos += 8 + size + (size & 1)
            if pos >= file_size:
                return None


def format_warnings(subtype: str, channels: int) -> list[str]:
    """What a source's format means for the voice: 8-bit samples, more than two channels."""
    warnings: list[str] = []
    if subtype in ("PCM_U8", "PCM_S8"):
        warnings.append("8-bit audio: noise floor near -48 dB, expect a noisier voice")
    if channels > 2:
        warnings.append(f"{channels} channels mixed down to mono (channel mean)")
    return warnings


def check_audio_file(path: Path) -> None:
    """Refuse an unreadable, empty or truncated (wav) file before decoding it.

    Raises:
        AudioLoadError: with the reason.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AudioLoadError(f"cannot read file ({exc.strerror})") from None
    if size == 0:
        raise AudioLoadError("empty file (0 bytes)")
    if path.suffix.lower() == ".wav":
        reason = _wav_truncation(path, size)
        if reason:
            raise AudioLoadError(reason)


def load_audio(path: Path | str) -> LoadedAudio:
    """Decode an audio file to float32 mono at its own sample rate.

    Raises:
        AudioLoadError: empty, truncated, corrupt or non-audio file; no samples; NaN/Inf samples.
    """
    path = Path(path)
    check_audio_file(path)
    if path.suffix.lower() in AV_EXTENSIONS:
        data, sr, channels, subtype = _decode_with_av(path)
    else:
        data, sr, channels, subtype = _decode_with_sndfile(path)
    if data.shape[0] == 0:
        raise AudioLoadError("no audio samples")
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise AudioLoadError(f"{bad} NaN/Inf samples")
    warnings = format_warnings(subtype, channels)
    mono = data[:, 0] if channels == 1 else data.mean(axis=1, dtype=np.float32)
    return LoadedAudio(
        np.ascontiguousarray(mono, dtype=np.float32), int(sr), int(channels), subtype, warnings
    )


def _decode_with_sndfile(path: Path) -> tuple[np.ndarray, int, int, str]:
    """(L, C) float32 samples, rate, channels and libsndfile subtype of a file."""
    try:
        with sf.SoundFile(str(path)) as fh:
            sr, channels, subtype = fh.samplerate, fh.channels, fh.subtype
            data = fh.read(dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        text = str(exc.error_string).strip().rstrip(".")
        if "format not recognised" in text.lower():
            raise AudioLoadError(f"not an audio file (libsndfile: {text})") from None
        raise AudioLoadError(f"corrupt or truncated audio (libsndfile: {text})") from None
    except (RuntimeError, OSError) as exc:
        raise AudioLoadError(f"cannot decode audio ({exc})") from None
    return data, int(sr), int(channels), str(subtype)


def _decode_with_av(path: Path) -> tuple[np.ndarray, int, int, str]:
    """(L, C) float32 samples, rate, channels and codec name of the first audio stream (PyAV)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioLoadError(f"no audio stream in this {path.suffix.lower()} file")
            stream = container.streams.audio[0]
            codec = stream.codec_context.name
            to_float = av.AudioResampler(format="fltp")  # planar float32, same layout and rate
            chunks = [
                out.to_ndarray() for frame in container.decode(stream) for out in to_float.resample(frame)
            ]
            chunks.extend(out.to_ndarray() for out in to_float.resample(None))
            sr = stream.codec_context.sample_rate
    except av.FFmpegError as exc:
        reason = str(getattr(exc, "strerror", None) or exc).strip().rstrip(".")
        if isinstance(exc, av.InvalidDataError):
            raise AudioLoadError(
                f"not an audio file or a corrupt {path.suffix.lower().lstrip('.')} file (ffmpeg: {reason})"
            ) from None
        raise AudioLoadError(f"cannot decode audio (ffmpeg: {reason})") from None
    if not chunks:
        raise AudioLoadError("no audio samples")
    planar = np.concatenate(chunks, axis=1)  # (C, L)
    return np.ascontiguousarray(planar.T, dtype=np.float32), int(sr), int(planar.shape[0]), codec


def resample(samples: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample (L,) float32 audio with soxr "HQ"; returns (round(L * sr_out / sr_in),) float32."""
    if sr_in == sr_out:
        return samples.astype(np.float32, copy=False)
    out = soxr.resample(samples, sr_in, sr_out, quality=RESAMPLE_QUALITY)
    return np.asarray(out, dtype=np.float32)


def to_pcm16(samples: np.ndarray, full_scale: float = 32767.0) -> np.ndarray:
    """float in [-1, 1] -> int16 as the official pipeline writes it: `x * full_scale`, truncated toward
    zero (numpy `astype`), clipped to the int16 range.

    The official slicer scales by 32767, the training copy (`5-wav32k`) by 32768.
    """
    scaled = np.clip(samples.astype(np.float32, copy=False) * np.float32(full_scale), -32768.0, 32767.0)
    return scaled.astype(np.int16)


def wav_bytes_pcm16(pcm: np.ndarray, sample_rate: int) -> bytes:
    """A complete 16-bit PCM mono WAV file holding (L,) int16 samples."""
    buf = io.BytesIO()
    sf.write(buf, pcm, sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def write_wav_pcm16(path: Path | str, samples: np.ndarray, sample_rate: int, *, fsync: bool = True) -> Path:
    """Write (L,) float audio as a 16-bit PCM mono WAV, atomically (temp name, then rename).

    `fsync=False` skips flushing to disk (still atomic against process crashes).
    """
    return atomic_write_bytes(path, wav_bytes_pcm16(to_pcm16(samples), sample_rate), fsync=fsync)


def read_wav_pcm16(path: Path | str) -> tuple[np.ndarray, int]:
    """Read a WAV written by `write_wav_pcm16` as float32 (int16 / 32768) and its rate."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=False)
    return np.asarray(data, dtype=np.float32), int(sr)
