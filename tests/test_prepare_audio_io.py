"""Audio decoding (every input format, any rate/channels/bit depth), resampling and 16-bit WAV writing."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf

from gptsovits_train.audio.io import AudioLoadError, load_audio, resample, to_pcm16, write_wav_pcm16


@pytest.fixture(scope="module")
def speech(sample_dir):
    x, sr = sf.read(sample_dir / "wavs" / "LJ001-0002.flac", dtype="float32")
    return x, sr


@pytest.mark.parametrize(
    ("suffix", "kwargs", "rate"),
    [
        (".wav", {"subtype": "PCM_16"}, 22050),
        (".wav", {"subtype": "PCM_24"}, 44100),
        (".wav", {"subtype": "FLOAT"}, 16000),
        (".flac", {}, 48000),
        (".mp3", {"format": "MP3"}, 44100),
        (".ogg", {"format": "OGG", "subtype": "VORBIS"}, 32000),
        (".opus", {"format": "OGG", "subtype": "OPUS"}, 48000),
    ],
)
def test_every_format_decodes_to_mono_float32(tmp_path, speech, suffix, kwargs, rate):
    x, sr = speech
    y = resample(x, sr, rate)
    stereo = np.stack([y, 0.5 * y], axis=1)
    path = tmp_path / f"a{suffix}"
    sf.write(path, stereo, rate, **kwargs)
    loaded = load_audio(path)
    assert loaded.samples.dtype == np.float32 and loaded.samples.ndim == 1
    assert (loaded.sample_rate, loaded.channels) == (rate, 2)
    # lossy codecs add/remove a little padding; the duration stays within 0.1 s
    assert loaded.seconds == pytest.approx(len(x) / sr, abs=0.1)
    assert loaded.warnings == []


def test_channel_mean_and_resample_length(tmp_path, speech):
    x, sr = speech
    path = tmp_path / "b.wav"
    sf.write(path, np.stack([x, np.zeros_like(x)], axis=1), sr, subtype="FLOAT")
    loaded = load_audio(path)
    np.testing.assert_allclose(loaded.samples, x / 2, atol=1e-7)
    y = resample(loaded.samples, sr, 32000)
    assert y.dtype == np.float32 and abs(len(y) - round(len(x) * 32000 / sr)) <= 1


def test_pcm16_writer_and_official_truncation(tmp_path):
    x = np.array([0.5, -0.5, 1.0, -1.0, 0.99999, 1e-5, -1e-5, 2.0], np.float32)
    assert to_pcm16(x).tolist() == [16383, -16383, 32767, -32767, 32766, 0, 0, 32767]
    assert to_pcm16(x, 32768.0).tolist() == [16384, -16384, 32767, -32768, 32767, 0, 0, 32767]
    path = write_wav_pcm16(tmp_path / "c.wav", x, 32000)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (32000, 1, "PCM_16", 8)
    assert [p.name for p in tmp_path.iterdir()] == ["c.wav"]  # no temporary file left


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file (0 bytes)"),
        (b"hello, this is plain text and not audio at all" * 4, "not an audio file"),
    ],
)
def test_unusable_files(tmp_path, content, reason):
    path = tmp_path / "x.flac"
    path.write_bytes(content)
    with pytest.raises(AudioLoadError, match=re.escape(reason)):
        load_audio(path)


def test_truncated_wav_detected_from_header(tmp_path, speech):
    x, sr = speech
    path = tmp_path / "t.wav"
    sf.write(path, x, sr, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[:-1000])
    with pytest.raises(AudioLoadError, match=rf"truncated WAV: header declares {len(x) * 2} bytes"):
        load_audio(path)
