"""Flat-memory decoding of long recordings: decode, mix to mono and resample block by block.

`audio.io.load_audio` + `audio.io.resample` hold a whole recording in memory (≈ 0.5 MB per second of
44.1 kHz stereo input, several GB for an audiobook). `decode_to_spill` gives the *same* 32 kHz mono
float32 samples, bit for bit, while holding one block at a time:

- libsndfile decodes sequentially in blocks (PCM and compressed formats alike decode identically
  whether read at once or in blocks);
- the channel mix is the same float32 mean per sample (two channels: ``(l + r) / 2``, which is what
  numpy's float32 mean computes);
- soxr's streaming resampler gives the same output as its one-shot call for any block split (it
  processes the stream the same way internally; `tests/test_prepare_scale.py` checks it).

The resampled samples go to a raw float32 "spill" file (4 bytes per output sample, ≈ 460 MB per hour
at 32 kHz, deleted when the source is done) that `SpillFile` reads back by range: the slicer's frame
RMS, the cuts and every clip then read only what they need. With `helper_thread=True` the stages run
as a pipeline of three threads (decode -> resample -> spill write and `on_output` on the calling
thread; libsndfile, numpy and soxr release the GIL), which lets a second core help on one long file.

The checks are those of `load_audio`, with the same messages: empty/truncated/corrupt files, no
samples, NaN/Inf samples, and the 8-bit / surround-downmix warnings.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np
import soundfile as sf
import soxr

from gptsovits_train.audio.clipping import Clipping, ClippingCounter
from gptsovits_train.audio.io import RESAMPLE_QUALITY, AudioLoadError, check_audio_file, format_warnings
from gptsovits_train.fileio import naming_write_failures

LOG = logging.getLogger(__name__)

#: GIL switch interval while the three-thread pipeline runs (Python's default is 5 ms).
GIL_SWITCH_SECONDS = 0.001
#: Input frames decoded per block (≈ 1.5 s at 44.1 kHz; ≈ 0.5 MB per channel in float32).
BLOCK_FRAMES = 1 << 16


@dataclass(frozen=True)
class StreamInfo:
    """Header facts of a file libsndfile can stream: input rate, channels, subtype, frame count,
    container format."""

    sample_rate: int
    channels: int
    subtype: str
    frames: int
    format: str

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def stream_info(path: Path) -> StreamInfo | None:
    """The header of `path` when libsndfile can open it, else None (the caller decodes it whole)."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return None
    return StreamInfo(
        int(info.samplerate), int(info.channels), str(info.subtype), int(info.frames), str(info.format)
    )


@dataclass
class StreamResult:
    """What `decode_to_spill` found: output length and peak, input length, the clipping of the decoded
    mono signal (`detect_clipping` of it, computed block by block), warnings (as `LoadedAudio`),
    and the CPU seconds of its pipeline stages: `decode` (+ checks, mix, clipping), `resample`, `output`
    (spill write + peak + `on_output`)."""

    n_samples: int
    peak: float
    input_seconds: float
    clipping: Clipping
    warnings: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)


def mix_to_mono(data: np.ndarray) -> np.ndarray:
    """(n, channels) float32 -> (n,) float32, bit-identical to `load_audio`'s channel mean."""
    channels = data.shape[1]
    if channels == 1:
        return np.ascontiguousarray(data[:, 0])
    if channels == 2:
        return (data[:, 0] + data[:, 1]) / np.float32(2)  # what mean(axis=1, dtype=float32) computes
    return np.ascontiguousarray(data.mean(axis=1, dtype=np.float32))


def libsndfile_error(exc: sf.LibsndfileError) -> AudioLoadError:
    """The one-line `AudioLoadError` for a libsndfile failure."""
    text = str(exc.error_string).strip().rstrip(".")
    if "format not recognised" in text.lower():
        return AudioLoadError(f"not an audio file (libsndfile: {text})")
    return AudioLoadError(f"corrupt or truncated audio (libsndfile: {text})")


#: 2 ** -15: libsndfile's int16 -> float scale (its `s2f` conversion multiplies by 1 / 0x8000).
_PCM16_SCALE = np.float32(1.0 / 32768.0)


def read_mono(fh: sf.SoundFile, block_frames: int, pcm16: bool) -> tuple[np.ndarray, int] | None:
    """The next block as (mono float32, NaN/Inf count), or None at the end of the file.

    `pcm16` (16-bit PCM, one or two channels): read the integers and convert them here, 3x less CPU
    than libsndfile's float read and bit-identical to it and to `mix_to_mono` of it: both products by
    2 ** -15 are exact in float32, and so are the sum of two of them and its half.
    """
    try:
        data = fh.read(block_frames, dtype="int16" if pcm16 else "float32", always_2d=True)
    except sf.LibsndfileError as exc:
        raise libsndfile_error(exc) from None
    except (RuntimeError, OSError) as exc:
        raise AudioLoadError(f"cannot decode audio ({exc})") from None
    if data.shape[0] == 0:
        return None
    if not pcm16:
        return mix_to_mono(data), int(np.count_nonzero(~np.isfinite(data)))
    if data.shape[1] == 1:
        return np.multiply(data[:, 0], _PCM16_SCALE, dtype=np.float32), 0
    mono = np.add(data[:, 0], data[:, 1], dtype=np.float32)
    mono *= np.float32(0.5) * _PCM16_SCALE
    return mono, 0


def _decoded_blocks(
    fh: sf.SoundFile, block_frames: int, clipping: ClippingCounter
) -> Iterator[tuple[np.ndarray, int, float]]:
    """(mono block, NaN/Inf count, CPU seconds spent on it) per block until the end of the file;
    `clipping` sees every block of a file without NaN/Inf (on this thread)."""
    pcm16 = str(fh.subtype) == "PCM_16" and int(fh.channels) <= 2
    clean = True
    while True:
        cpu = time.thread_time()
        block = read_mono(fh, block_frames, pcm16)
        if block is None:
            return
        clean = clean and block[1] == 0
        if clean:
            clipping.update(block[0])
        yield block[0], block[1], time.thread_time() - cpu


Block = tuple[np.ndarray, int, float]
T = TypeVar("T")


def _prefetched(items: Iterator[T], depth: int = 4) -> Generator[T, None, None]:
    """Run `items` in a helper thread, `depth` items ahead; its exceptions are re-raised here."""
    q: queue.Queue[T | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(None)
        except BaseException as exc:  # noqa: BLE001  (handed to the consumer, which raises it)
            q.put(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator upstream stops its own helper thread too

    worker = threading.Thread(target=produce, name="audio-pipeline", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


@dataclass
class _Counts:
    """Filled in by `_resampled` as it goes (read once the stream is exhausted)."""

    n_in: int = 0
    bad: int = 0
    decode_cpu: float = 0.0
    resample_cpu: float = 0.0


def _resampled(
    blocks: Iterator[Block], resampler: soxr.ResampleStream | None, counts: _Counts
) -> Generator[np.ndarray, None, None]:
    """The output pieces of the resampler (or the blocks themselves) until the end of the file; after
    a block with NaN/Inf nothing more is produced, the rest only counted."""
    for mono, n_bad, cpu in blocks:
        counts.decode_cpu += cpu
        counts.n_in += mono.shape[0]
        counts.bad += n_bad
        if counts.bad:
            continue  # the file is rejected; count the rest for the message
        start = time.thread_time()
        out = mono if resampler is None else resampler.resample_chunk(mono, last=False)
        counts.resample_cpu += time.thread_time() - start
        yield out
    if resampler is not None and counts.n_in and not counts.bad:
        start = time.thread_time()
        out = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        counts.resample_cpu += time.thread_time() - start
        yield out


class SpillWriter:
    """Appends float32 samples to a spill file; tracks their count and peak |x|."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.n_samples = 0
        self.peak = 0.0

    def write(self, samples: np.ndarray) -> None:
        if samples.size:
            self.peak = max(self.peak, float(np.max(np.abs(samples))))
            self._fh.write(np.ascontiguousarray(samples, dtype=np.float32).tobytes())
            self.n_samples += samples.shape[0]

    def flush(self) -> int:
        """Make every sample written so far readable by other readers; returns their count."""
        self._fh.flush()
        return self.n_samples


#: Called with each piece of 32 kHz output after it is in the spill (and the writer, to flush it).
OutputHook = Callable[[np.ndarray, SpillWriter], None]


def decode_to_spill(
    path: Path,
    sr_out: int,
    spill: Path,
    *,
    block_frames: int = BLOCK_FRAMES,
    helper_thread: bool = False,
    on_output: OutputHook | None = None,
) -> StreamResult:
    """Decode `path` to float32 mono at `sr_out`, written raw to `spill`, one block at a time.

    The samples in `spill` are bit-identical to ``resample(load_audio(path).samples, sr, sr_out)``.
    `on_output` sees them piece by piece, in order, as they are written (not for a rejected file).

    Raises:
        AudioLoadError: the same per-file problems as `load_audio`, with the same messages.
    """
    fh = open_checked(path)
    with fh:
        sr_in, channels, subtype = int(fh.samplerate), int(fh.channels), str(fh.subtype)
        resampler = (
            None
            if sr_in == sr_out
            else soxr.ResampleStream(sr_in, sr_out, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        )
        counts = _Counts()
        spill.parent.mkdir(parents=True, exist_ok=True)
        clipping = ClippingCounter()
        blocks = _decoded_blocks(fh, block_frames, clipping)
        if helper_thread:
            blocks = _prefetched(blocks)
        outputs = _resampled(blocks, resampler, counts)
        if helper_thread:
            outputs = _prefetched(outputs)
        output_cpu = 0.0
        with contextlib.ExitStack() as stack:
            stack.callback(outputs.close)  # on any error, the helper threads stop here, not at collection
            if helper_thread:
                # hand the GIL over more often than every 5 ms so that each stage's short Python steps
                # do not queue behind another's (measured: decode_to_spill of a 60-minute file
                # 1.34-1.50 s -> 1.21-1.25 s wall on two cores; python-soxr releases the GIL while
                # it resamples, numpy and libsndfile for their long calls)
                stack.callback(sys.setswitchinterval, sys.getswitchinterval())
                sys.setswitchinterval(GIL_SWITCH_SECONDS)
            stack.enter_context(naming_write_failures(spill))  # a full disk: one line naming the spill
            out = stack.enter_context(open(spill, "wb"))
            writer = SpillWriter(out)
            for samples in outputs:
                start = time.thread_time()
                writer.write(samples)
                if on_output is not None and samples.size:
                    on_output(samples, writer)
                output_cpu += time.thread_time() - start
    if counts.n_in == 0:
        raise AudioLoadError("no audio samples")
    if counts.bad:
        raise AudioLoadError(f"{counts.bad} NaN/Inf samples")
    warnings = format_warnings(subtype, channels)
    cpu = {"decode": counts.decode_cpu, "resample": counts.resample_cpu, "output": output_cpu}
    return StreamResult(writer.n_samples, writer.peak, counts.n_in / sr_in, clipping.result(), warnings, cpu)


def open_checked(path: Path) -> sf.SoundFile:
    """`path` opened for decoding, after `check_audio_file`.

    Raises:
        AudioLoadError: the file is empty, truncated, or not audio libsndfile can decode.
    """
    check_audio_file(path)
    try:
        return sf.SoundFile(str(path))
    except sf.LibsndfileError as exc:
        raise libsndfile_error(exc) from None
    except (RuntimeError, OSError) as exc:
        raise AudioLoadError(f"cannot decode audio ({exc})") from None


def clipping_of(path: Path, block_frames: int = BLOCK_FRAMES) -> Clipping:
    """`detect_clipping` of the decoded mono signal of `path`, read block by block (flat memory), for a
    file without NaN/Inf samples (the blocks from the first one on are not counted).

    Raises:
        AudioLoadError: as `decode_to_spill`.
    """
    fh = open_checked(path)
    counter = ClippingCounter()
    with fh:
        for _ in _decoded_blocks(fh, block_frames, counter):
            pass
    return counter.result()


class SpillFile:
    """Random access to the raw float32 samples written by `decode_to_spill` (a `SampleReader`)."""

    def __init__(self, path: Path, n_samples: int) -> None:
        self.path = path
        self.n_samples = n_samples

    def __call__(self, start: int, end: int) -> np.ndarray:
        """Samples [start, end) as (end - start,) float32."""
        if not 0 <= start <= end <= self.n_samples:
            raise ValueError(f"range [{start}, {end}) outside the {self.n_samples} samples of {self.path}")
        with open(self.path, "rb") as fh:
            fh.seek(4 * start)
            data = np.fromfile(fh, dtype=np.float32, count=end - start)
        if data.shape[0] != end - start:
            raise OSError(f"{self.path} is shorter than expected ({start + data.shape[0]} < {end} samples)")
        return data
